//! A comment body's 2000-character limit counts the text as stored, in NFC: a body that NFC
//! lengthens past the limit is a 400 naming the limit (not the database's CHECK failing as a
//! 500), and one that NFC shortens to the limit is taken.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tally_api::comments::MAX_COMMENT_CHARS;
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn the_comment_length_limit_counts_characters_after_nfc() {
    // Arrange: U+FB2C is one character as sent and three in NFC; e + U+0301 is two and one.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let grows = "\u{fb2c}".repeat(MAX_COMMENT_CHARS);
    let shrinks = "e\u{301}".repeat(MAX_COMMENT_CHARS);
    let send = |body: String| {
        app.request(
            Method::POST,
            &format!("/v1/posts/{post}/comments"),
            Some("bob"),
        )
        .json(&json!({ "body": body }))
        .send()
    };

    // Act
    let grown = send(grows).await.expect("an answer");
    let shrunk = send(shrinks).await.expect("an answer");

    // Assert
    let (status, problem) = problem(grown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(
        problem["detail"],
        "`body` must be a string of 1 to 2000 characters (counted after Unicode NFC normalization): it is 6000"
    );
    assert_eq!(shrunk.status(), StatusCode::CREATED);
    assert_eq!(
        app.scalar_i64("SELECT char_length(body)::bigint FROM comments")
            .await,
        MAX_COMMENT_CHARS as i64
    );

    app.stop().await;
}
