//! A comment body of only invisible characters (zero-width and other format characters such
//! as U+200B and U+202E, with or without whitespace) shows as nothing: it is blank, a 400.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn a_comment_of_only_zero_width_or_format_characters_is_blank() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;

    for body in [
        "\u{200b}",
        "\u{202e}",
        " \u{feff}\u{2060} ",
        "\u{200d}\n\u{ad}",
    ] {
        // Act
        let response = app
            .request(
                Method::POST,
                &format!("/v1/posts/{post}/comments"),
                Some("bob"),
            )
            .json(&json!({ "body": body }))
            .send()
            .await
            .expect("an answer");

        // Assert
        let (status, problem) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("`body` must be a string of 1 to 2000 characters that is not blank"),
            "{body:?}: {detail}"
        );
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM comments").await, 0);

    app.stop().await;
}
