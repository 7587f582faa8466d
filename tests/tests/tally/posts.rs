//! Posts: deleting them (author only; afterwards everything on them is a 404), and
//! `liked_by_me` on reads.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

async fn read(app: &TestApp, path: &str, user: Option<&str>) -> (StatusCode, Value) {
    let response = app
        .request(Method::GET, path, user)
        .send()
        .await
        .expect("an answer");
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn only_the_author_deletes_a_post_and_afterwards_it_and_writes_on_it_are_404() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let comment = app.comment("bob", &post, "nice").await;
    app.like("bob", &post).await;
    let delete = |user| {
        app.request(Method::DELETE, &format!("/v1/posts/{post}"), Some(user))
            .send()
    };

    // Act
    let by_bob = delete("bob").await.expect("bob's delete");
    let by_alice = delete("alice").await.expect("alice's delete");
    let again = delete("alice").await.expect("alice's second delete");

    // Assert
    assert_eq!(problem(by_bob).await.0, StatusCode::FORBIDDEN);
    assert_eq!(by_alice.status(), StatusCode::NO_CONTENT);
    let event_id = by_alice
        .headers()
        .get("tally-event-id")
        .and_then(|v| v.to_str().ok())
        .expect("the delete names its event")
        .to_owned();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert!(!again.headers().contains_key("tally-event-id"));
    let outbox: String = app
        .db
        .query_one(
            "SELECT event_type FROM outbox WHERE event_id = $1::text::uuid",
            &[&event_id],
        )
        .await
        .expect("the delete's event")
        .get(0);
    assert_eq!(outbox, "post.deleted");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type = 'post.deleted'")
            .await,
        1
    );

    let after = [
        (Method::GET, format!("/v1/posts/{post}"), None),
        (Method::GET, format!("/v1/posts/{post}/likes"), None),
        (Method::GET, format!("/v1/posts/{post}/comments"), None),
        (
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({ "post_id": post })),
        ),
        (Method::DELETE, format!("/v1/likes/{post}"), None),
        (Method::POST, format!("/v1/likes/{post}/toggle"), None),
        (
            Method::POST,
            format!("/v1/posts/{post}/comments"),
            Some(json!({ "body": "too late" })),
        ),
        (Method::DELETE, format!("/v1/comments/{comment}"), None),
    ];
    for (method, path, body) in after {
        let request = app.request(method.clone(), &path, Some("bob"));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.expect("an answer");
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (status, feed) = read(&app, &format!("/v1/posts?ids={post}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["missing"], json!([post]), "{feed}");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM likes").await,
        1,
        "the like is kept: counts stay exact"
    );

    app.stop().await;
}

#[tokio::test]
async fn deleting_a_post_that_never_existed_or_with_a_malformed_id_is_a_4xx_problem() {
    let app = TestApp::spawn().await;
    for (path, expected) in [
        (
            format!("/v1/posts/{}", uuid::Uuid::now_v7()),
            StatusCode::NOT_FOUND,
        ),
        ("/v1/posts/not-a-uuid".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let response = app
            .request(Method::DELETE, &path, Some("alice"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(problem(response).await.0, expected, "{path}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM outbox").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn liked_by_me_tells_a_signed_in_reader_and_is_absent_for_anonymous_reads() {
    // Arrange
    let app = TestApp::spawn().await;
    let liked = app.create_post("alice").await;
    let other = app.create_post("alice").await;
    app.like("bob", &liked).await;

    // Act
    let (_, as_bob) = read(&app, &format!("/v1/posts/{liked}"), Some("bob")).await;
    let (_, as_carol) = read(&app, &format!("/v1/posts/{liked}"), Some("carol")).await;
    let (_, anonymous) = read(&app, &format!("/v1/posts/{liked}"), None).await;
    let (_, feed) = read(&app, &format!("/v1/posts?ids={other},{liked}"), Some("bob")).await;
    let (_, anonymous_feed) = read(&app, &format!("/v1/posts?ids={liked}"), None).await;

    // Assert
    assert_eq!(as_bob["liked_by_me"], true, "{as_bob}");
    assert_eq!(as_carol["liked_by_me"], false, "{as_carol}");
    assert!(anonymous.get("liked_by_me").is_none(), "{anonymous}");
    let flags: Vec<&Value> = feed["posts"]
        .as_array()
        .expect("posts")
        .iter()
        .map(|post| &post["liked_by_me"])
        .collect();
    assert_eq!(flags, [&json!(false), &json!(true)], "{feed}");
    assert!(
        anonymous_feed["posts"][0].get("liked_by_me").is_none(),
        "{anonymous_feed}"
    );

    app.stop().await;
}

#[tokio::test]
async fn a_read_with_an_invalid_token_is_a_401_problem_not_an_anonymous_read() {
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    for path in [
        format!("/v1/posts/{post}"),
        format!("/v1/posts?ids={post}"),
        format!("/v1/posts/{post}/likes"),
        format!("/v1/posts/{post}/comments"),
    ] {
        for authorization in ["Bearer not.a.jwt", "Basic YWxpY2U6c2VjcmV0"] {
            let response = app
                .request(Method::GET, &path, None)
                .header("authorization", authorization)
                .send()
                .await
                .expect("an answer");
            let (status, body) = problem(response).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {authorization}");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("token") || d.contains("Bearer")),
                "{body}"
            );
        }
    }
    app.stop().await;
}
