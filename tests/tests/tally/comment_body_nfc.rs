//! Comment bodies are stored in Unicode NFC: `e` with a combining accent and a precomposed
//! `é` are the same text, so resending a comment in the other form is the same comment.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::TestApp;

#[tokio::test]
async fn a_comment_body_is_stored_and_served_in_nfc() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let id = uuid::Uuid::now_v7();
    let send = |body: &'static str| {
        app.request(
            Method::POST,
            &format!("/v1/posts/{post}/comments"),
            Some("bob"),
        )
        .json(&json!({ "id": id, "body": body }))
        .send()
    };

    // Act: decomposed (NFD) first, then the same text precomposed.
    let decomposed = send("cafe\u{301}").await.expect("an answer");
    let precomposed = send("caf\u{e9}").await.expect("an answer");

    // Assert
    assert_eq!(decomposed.status(), StatusCode::CREATED);
    let created: Value = decomposed.json().await.expect("a comment");
    assert_eq!(created["body"], "caf\u{e9}");
    assert_eq!(
        precomposed.status(),
        StatusCode::OK,
        "the same comment again"
    );
    let stored: String = app
        .db
        .query_one("SELECT body FROM comments WHERE comment_id = $1", &[&id])
        .await
        .expect("the comment")
        .get(0);
    assert_eq!(stored, "caf\u{e9}");

    app.stop().await;
}
