//! A JSON body that repeats a key is refused: the last key must not silently win (a like meant
//! for a missing post would otherwise land on another).

use reqwest::{Method, StatusCode};
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn a_body_repeating_a_key_is_a_400_on_every_json_operation() {
    // Arrange
    let app = TestApp::spawn().await;
    let real = app.create_post("alice").await;
    let missing = "0193c3a4-7f1e-7cc0-8d3a-1a2b3c4d5e6f";
    let bodies = [
        (
            "/v1/likes".to_owned(),
            format!(r#"{{"post_id":"{missing}","post_id":"{real}"}}"#),
        ),
        (
            format!("/v1/posts/{real}/comments"),
            r#"{"body":"hello","body":"bye"}"#.to_owned(),
        ),
        (
            "/v1/posts".to_owned(),
            format!(r#"{{"id":"{missing}","id":"{missing}"}}"#),
        ),
    ];

    // Act and assert
    for (path, body) in bodies {
        let response = app
            .request(Method::POST, &path, Some("bob"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("posting");
        let (status, problem) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("twice"), "{path}: {detail}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM comments").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM posts").await, 1);

    app.stop().await;
}
