//! A token's `sub` is the user id others see: it is normalized to NFC (one user however the
//! id's accents were encoded), and a blank one, or one with control, invisible format or
//! bidi characters, is refused with a 401 that says so, before anything is written.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn composed_and_decomposed_ids_are_one_user_stored_in_nfc() {
    // Arrange: "josé" precomposed (U+00E9) and as "e" + U+0301.
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    let composed = "jos\u{e9}";
    let decomposed = "jose\u{301}";

    // Act
    let first = app
        .request(Method::POST, "/v1/likes", Some(decomposed))
        .json(&json!({ "post_id": post }))
        .send()
        .await
        .expect("a like");
    let again = app
        .request(Method::POST, "/v1/likes", Some(composed))
        .json(&json!({ "post_id": post, "user_id": decomposed }))
        .send()
        .await
        .expect("a like");
    let likers: Value = app
        .request(Method::GET, &format!("/v1/posts/{post}/likes"), None)
        .send()
        .await
        .expect("the likers")
        .json()
        .await
        .expect("JSON");

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the same user liked already"
    );
    assert_eq!(likers["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(likers["items"][0]["user_id"], composed);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM likes WHERE user_id = 'jos\u{e9}'")
            .await,
        1
    );

    app.stop().await;
}

#[tokio::test]
async fn blank_invisible_control_and_bidi_ids_are_refused_with_401() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    let cases = [
        ("two spaces", "  ", "is only whitespace"),
        ("a leading space", " bob", "whitespace"),
        ("a right-to-left override", "bob\u{202e}evil", "U+202E"),
        ("only a zero-width space", "\u{200b}", "U+200B"),
        ("a zero-width joiner", "b\u{200d}ob", "U+200D"),
        ("BEL", "bob\u{7}", "U+0007"),
        ("ESC", "\u{1b}[31mbob", "U+001B"),
        ("a line separator", "bob\u{2028}", "U+2028"),
        ("a left-to-right isolate", "\u{2066}bob", "U+2066"),
    ];

    // Act and assert: a write and a read with each.
    for (what, sub, words) in cases {
        let like = app
            .request(Method::POST, "/v1/likes", Some(sub))
            .json(&json!({ "post_id": post }))
            .send()
            .await
            .expect("an answer");
        let challenge = like
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (status, body) = problem(like).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("`sub` claim (the user id)") && detail.contains(words),
            "{what}: {detail}"
        );
        assert!(challenge.contains(r#"error="invalid_token""#), "{what}");
        let read = app
            .request(Method::GET, &format!("/v1/posts/{post}"), Some(sub))
            .send()
            .await
            .expect("an answer");
        assert_eq!(problem(read).await.0, StatusCode::UNAUTHORIZED, "{what}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);

    app.stop().await;
}
