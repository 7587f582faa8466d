//! Comments: adding (idempotent on its id), listing newest first, deleting (by the comment's
//! author or the post's), each change one event, and the post's count following.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

async fn add(app: &TestApp, user: &str, post: &str, body: Value) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/v1/posts/{post}/comments"),
        Some(user),
    )
    .json(&body)
    .send()
    .await
    .expect("an answer")
}

async fn delete(app: &TestApp, user: &str, comment: &str) -> reqwest::Response {
    app.request(
        Method::DELETE,
        &format!("/v1/comments/{comment}"),
        Some(user),
    )
    .send()
    .await
    .expect("an answer")
}

async fn comment_events(app: &TestApp, event_type: &str) -> i64 {
    app.db
        .query_one(
            "SELECT count(*) FROM outbox WHERE event_type = $1",
            &[&event_type],
        )
        .await
        .expect("counting events")
        .get(0)
}

#[tokio::test]
async fn a_comment_is_stored_with_one_event_and_counted_on_its_post() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;

    // Act
    let response = add(&app, "bob", &post, json!({ "body": "First! ✨" })).await;

    // Assert
    assert_eq!(response.status(), StatusCode::CREATED);
    let comment: Value = response.json().await.expect("a comment");
    assert_eq!(comment["author_id"], "bob");
    assert_eq!(comment["post_id"], post.as_str());
    assert_eq!(comment["body"], "First! ✨");
    let event_id = comment["event_id"].as_str().expect("an event id");
    let payload: Value = app
        .db
        .query_one(
            "SELECT payload::text FROM outbox WHERE event_id = $1::text::uuid",
            &[&event_id],
        )
        .await
        .expect("the event")
        .get::<_, String>(0)
        .parse()
        .expect("JSON");
    assert_eq!(payload["type"], "comment.added");
    assert_eq!(payload["comment_id"], comment["id"]);
    assert_eq!(payload["post_author"], "alice");
    assert_eq!(payload["actor"], "bob");
    let read: Value = app
        .request(
            Method::GET,
            &format!("/v1/posts/{post}?after_event={event_id}"),
            None,
        )
        .send()
        .await
        .expect("reading the post")
        .json()
        .await
        .expect("a post");
    assert_eq!(read["after_event_applied"], true, "{read}");
    assert_eq!(read["comments"], 1, "{read}");

    app.stop().await;
}

#[tokio::test]
async fn sending_a_comment_again_with_its_id_changes_nothing_and_another_comment_cannot_take_the_id()
 {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let id = uuid::Uuid::now_v7();
    let body = json!({ "id": id, "body": "hello" });

    // Act
    let first = add(&app, "bob", &post, body.clone()).await;
    let retry = add(&app, "bob", &post, body).await;
    let other_body = add(&app, "bob", &post, json!({ "id": id, "body": "changed" })).await;
    let other_author = add(&app, "carol", &post, json!({ "id": id, "body": "hello" })).await;

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(retry.status(), StatusCode::OK);
    let retry: Value = retry.json().await.expect("the comment");
    assert_eq!(retry["id"], id.to_string());
    assert_eq!(retry["event_id"], Value::Null);
    assert_eq!(problem(other_body).await.0, StatusCode::CONFLICT);
    assert_eq!(problem(other_author).await.0, StatusCode::CONFLICT);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM comments").await, 1);
    assert_eq!(comment_events(&app, "comment.added").await, 1);

    app.stop().await;
}

#[tokio::test]
async fn empty_blank_oversized_and_malformed_comments_are_400_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let longest = "é".repeat(tally_api::comments::MAX_COMMENT_CHARS);
    let too_long = "é".repeat(tally_api::comments::MAX_COMMENT_CHARS + 1);

    // Act and assert
    for (what, body) in [
        ("an empty body", json!({ "body": "" })),
        ("a blank body", json!({ "body": " \n\t\u{a0}" })),
        ("2001 characters", json!({ "body": too_long })),
        ("a NUL character", json!({ "body": "a\u{0}b" })),
        ("no body", json!({})),
        ("a number", json!({ "body": 7 })),
        ("an unknown field", json!({ "body": "hi", "mood": "happy" })),
        ("a malformed id", json!({ "id": "x", "body": "hi" })),
    ] {
        let (status, problem) = problem(add(&app, "bob", &post, body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {problem}");
    }
    let (status, _) = problem(
        app.request(Method::POST, "/v1/posts/nope/comments", Some("bob"))
            .json(&json!({ "body": "hi" }))
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a malformed post id");
    let unknown = uuid::Uuid::now_v7().to_string();
    let (status, _) = problem(add(&app, "bob", &unknown, json!({ "body": "hi" })).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown post");
    assert_eq!(comment_events(&app, "comment.added").await, 0);
    let exactly_max = add(&app, "bob", &post, json!({ "body": longest })).await;
    assert_eq!(exactly_max.status(), StatusCode::CREATED, "2000 characters");

    app.stop().await;
}

#[tokio::test]
async fn the_comment_author_and_the_post_author_may_delete_a_comment_and_no_one_else() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let by_bob = app.comment("bob", &post, "one").await;
    let also_by_bob = app.comment("bob", &post, "two").await;

    // Act
    let carol = delete(&app, "carol", &by_bob).await;
    let bob = delete(&app, "bob", &by_bob).await;
    let bob_again = delete(&app, "bob", &by_bob).await;
    let alice = delete(&app, "alice", &also_by_bob).await;
    let unknown = delete(&app, "alice", &uuid::Uuid::now_v7().to_string()).await;
    let malformed = delete(&app, "alice", "x").await;

    // Assert
    assert_eq!(problem(carol).await.0, StatusCode::FORBIDDEN);
    assert_eq!(bob.status(), StatusCode::NO_CONTENT);
    assert!(bob.headers().contains_key("tally-event-id"));
    assert_eq!(bob_again.status(), StatusCode::NO_CONTENT);
    assert!(!bob_again.headers().contains_key("tally-event-id"));
    assert_eq!(alice.status(), StatusCode::NO_CONTENT);
    assert_eq!(problem(unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(problem(malformed).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(comment_events(&app, "comment.removed").await, 2);
    let live = app
        .scalar_i64("SELECT count(*) FROM comments WHERE deleted_at IS NULL")
        .await;
    assert_eq!(live, 0);
    let counted = TestApp::eventually(Duration::from_secs(10), || async {
        let comments = app
            .scalar_i64("SELECT coalesce(sum(comments), 0)::bigint FROM post_counts")
            .await;
        (comments == 0 && app.scalar_i64("SELECT count(*) FROM inbox").await == 5).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "the count went up by two and down by two"
    );

    app.stop().await;
}

#[tokio::test]
async fn comments_are_listed_newest_first_in_pages_without_the_deleted_ones() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.comment("bob", &post, &format!("comment {i}")).await);
    }
    let deleted = ids.remove(2);
    assert_eq!(
        delete(&app, "bob", &deleted).await.status(),
        StatusCode::NO_CONTENT
    );

    // Act
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("?limit=2&cursor={cursor}"),
            None => "?limit=2".to_owned(),
        };
        let page: Value = app
            .request(
                Method::GET,
                &format!("/v1/posts/{post}/comments{query}"),
                None,
            )
            .send()
            .await
            .expect("a page")
            .json()
            .await
            .expect("JSON");
        pages += 1;
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("an id").to_owned());
            assert_eq!(item["event_id"], Value::Null);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    // Assert
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(pages, 2);

    app.stop().await;
}
