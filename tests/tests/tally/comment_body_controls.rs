//! A comment body may hold newlines and tabs but no other control character (BEL, ESC, ...):
//! a 400 whose detail names the field, the rule and the character.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn a_comment_with_a_control_character_other_than_newline_or_tab_is_refused() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let send = |body: &'static str| {
        app.request(
            Method::POST,
            &format!("/v1/posts/{post}/comments"),
            Some("bob"),
        )
        .json(&json!({ "body": body }))
        .send()
    };

    // Act
    let bell = send("ding\u{7}").await.expect("an answer");
    let escape = send("\u{1b}[31mred").await.expect("an answer");
    let lines_and_tabs = send("one\n\ttwo").await.expect("an answer");

    // Assert
    for (response, detail) in [
        (bell, "character 5 is U+0007"),
        (escape, "character 1 is U+001B"),
    ] {
        let (status, problem) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(
            problem["detail"],
            format!(
                "`body` must not contain control characters other than newline and tab: {detail}"
            )
        );
    }
    assert_eq!(lines_and_tabs.status(), StatusCode::CREATED);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM comments").await, 1);

    app.stop().await;
}
