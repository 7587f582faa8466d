//! `POST /v1/likes/{post_id}/toggle`: the like button. Each toggle flips the like, writes one
//! event and says which way it went.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tally_tests::TestApp;

async fn toggle(app: &TestApp, user: Option<&str>, post_id: &str) -> (StatusCode, Value) {
    let response = app
        .request(Method::POST, &format!("/v1/likes/{post_id}/toggle"), user)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn toggling_twice_likes_then_unlikes_with_one_event_each() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;

    // Act
    let (first_status, first) = toggle(&app, Some("bob"), &post_id).await;
    let (second_status, second) = toggle(&app, Some("bob"), &post_id).await;

    // Assert
    assert_eq!(first_status, StatusCode::OK, "{first}");
    assert_eq!(first["liked"], true);
    assert_eq!(second_status, StatusCode::OK, "{second}");
    assert_eq!(second["liked"], false);
    assert_ne!(first["event_id"], second["event_id"]);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type LIKE 'like.%'")
            .await,
        2
    );
    let event_id = second["event_id"].as_str().expect("an event id");
    let read: Value = app
        .request(
            Method::GET,
            &format!("/v1/posts/{post_id}?after_event={event_id}"),
            None,
        )
        .send()
        .await
        .expect("reading the post")
        .json()
        .await
        .expect("a post");
    assert_eq!(read["after_event_applied"], true, "{read}");
    assert_eq!(read["likes"], 0, "{read}");

    app.stop().await;
}

#[tokio::test]
async fn toggling_without_a_token_an_unknown_post_or_a_malformed_id_is_a_4xx_problem() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    // Act and assert
    for (what, user, post, expected) in [
        ("no token", None, post_id.as_str(), StatusCode::UNAUTHORIZED),
        (
            "unknown post",
            Some("bob"),
            unknown.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            "malformed id",
            Some("bob"),
            "not-a-uuid",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = toggle(&app, user, post).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert_eq!(body["status"], expected.as_u16(), "{what}: {body}");
    }
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE event_type LIKE 'like.%'")
            .await,
        0
    );

    app.stop().await;
}
