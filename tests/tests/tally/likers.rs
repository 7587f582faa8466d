//! Who liked a post: `GET /v1/posts/{post_id}/likes`, newest first, in keyset pages that
//! neither skip nor repeat a liker while new likes arrive.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tally_tests::{TestApp, problem};

/// Pages through the likers of `post` `limit` at a time; the user ids in order and the
/// number of pages.
async fn all_likers(app: &TestApp, post: &str, limit: u32) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("?limit={limit}&cursor={cursor}"),
            None => format!("?limit={limit}"),
        };
        let response = app
            .request(Method::GET, &format!("/v1/posts/{post}/likes{query}"), None)
            .send()
            .await
            .expect("a page");
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.expect("JSON");
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit as usize);
        seen.extend(
            items
                .iter()
                .map(|item| item["user_id"].as_str().expect("a user id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (seen, pages),
        }
    }
}

#[tokio::test]
async fn likers_are_listed_newest_first_a_page_at_a_time() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let users: Vec<String> = (0..7).map(|i| format!("liker-{i}")).collect();
    for user in &users {
        app.like(user, &post).await;
    }

    // Act
    let (seen, pages) = all_likers(&app, &post, 3).await;
    let (first_page_only, _) = {
        let page: Value = app
            .request(Method::GET, &format!("/v1/posts/{post}/likes"), None)
            .send()
            .await
            .expect("a page")
            .json()
            .await
            .expect("JSON");
        (
            page["items"].as_array().map(Vec::len),
            page["next_cursor"].clone(),
        )
    };

    // Assert
    let newest_first: Vec<String> = users.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);
    assert_eq!(first_page_only, Some(7), "20 per page by default");

    app.stop().await;
}

#[tokio::test]
async fn paging_while_new_likes_arrive_neither_skips_nor_repeats_a_liker() {
    // Arrange: 60 likers, then a writer adding 60 more while a reader pages through.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let before: Vec<String> = (0..60).map(|i| format!("early-{i:03}")).collect();
    for user in &before {
        app.like(user, &post).await;
    }
    let writer = {
        let http = app.http.clone();
        let api = app.api_url.clone();
        let post = post.clone();
        let tokens: Vec<String> = (0..60)
            .map(|i| app.token(&format!("late-{i:03}")))
            .collect();
        tokio::spawn(async move {
            for token in tokens {
                let response = http
                    .post(format!("{api}/v1/likes"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "post_id": post }))
                    .send()
                    .await
                    .expect("a late like");
                assert_eq!(response.status(), StatusCode::CREATED);
            }
        })
    };

    // Act: small pages, so the reader is still paging while the likes land.
    let (seen, _) = all_likers(&app, &post, 4).await;
    writer.await.expect("the writer");

    // Assert: every liker from before exactly once, in order; no one twice.
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a liker was repeated: {seen:?}");
    let early: Vec<&String> = seen.iter().filter(|u| u.starts_with("early-")).collect();
    let expected: Vec<&String> = before.iter().rev().collect();
    assert_eq!(early, expected, "an early liker was skipped or misplaced");
    let (after, _) = all_likers(&app, &post, 100).await;
    assert_eq!(after.len(), 120);

    app.stop().await;
}

#[tokio::test]
async fn bad_limits_forged_cursors_and_unknown_posts_are_4xx_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let comments_cursor = {
        for i in 0..2 {
            app.comment("bob", &post, &format!("c{i}")).await;
        }
        let page: Value = app
            .request(
                Method::GET,
                &format!("/v1/posts/{post}/comments?limit=1"),
                None,
            )
            .send()
            .await
            .expect("a page")
            .json()
            .await
            .expect("JSON");
        page["next_cursor"].as_str().expect("a cursor").to_owned()
    };
    let unknown = uuid::Uuid::now_v7();

    // Act and assert
    for (what, path, expected) in [
        ("limit 0", format!("/v1/posts/{post}/likes?limit=0"), 400),
        ("limit -1", format!("/v1/posts/{post}/likes?limit=-1"), 400),
        (
            "limit 101",
            format!("/v1/posts/{post}/likes?limit=101"),
            400,
        ),
        ("limit x", format!("/v1/posts/{post}/likes?limit=x"), 400),
        (
            "limit 2^64",
            format!("/v1/posts/{post}/likes?limit=18446744073709551616"),
            400,
        ),
        (
            "garbage cursor",
            format!("/v1/posts/{post}/likes?cursor=%00%FF"),
            400,
        ),
        (
            "forged cursor",
            format!("/v1/posts/{post}/likes?cursor=bDEuMTIz"),
            400,
        ),
        (
            "another list's cursor",
            format!("/v1/posts/{post}/likes?cursor={comments_cursor}"),
            400,
        ),
        (
            "comments: limit 0",
            format!("/v1/posts/{post}/comments?limit=0"),
            400,
        ),
        (
            "comments: forged cursor",
            format!("/v1/posts/{post}/comments?cursor=YzEuMS5ub3QtYS11dWlk"),
            400,
        ),
        ("unknown post", format!("/v1/posts/{unknown}/likes"), 404),
        (
            "comments of an unknown post",
            format!("/v1/posts/{unknown}/comments"),
            404,
        ),
        ("malformed post id", "/v1/posts/xyz/likes".to_owned(), 400),
    ] {
        let response = app
            .request(Method::GET, &path, None)
            .send()
            .await
            .expect("an answer");
        let (status, body) = problem(response).await;
        assert_eq!(status.as_u16(), expected, "{what}: {body}");
    }

    app.stop().await;
}
