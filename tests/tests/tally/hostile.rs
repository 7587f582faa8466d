//! Hostile input: whatever a client sends, the api answers with a 4xx problem (or accepts the
//! input as plain data), never a 5xx, a panic or a dropped connection.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::TestApp;

/// Asserts a 4xx `application/problem+json` answer whose body repeats its status.
async fn assert_client_error(what: &str, response: Result<reqwest::Response, reqwest::Error>) {
    let response = response.unwrap_or_else(|err| panic!("{what}: no answer ({err})"));
    let status = response.status();
    assert!(status.is_client_error(), "{what}: got {status}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "{what}");
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|err| panic!("{what}: not JSON ({err})"));
    assert_eq!(body["status"], status.as_u16(), "{what}: {body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "{what}: no {field} in {body}");
    }
}

#[tokio::test]
async fn oversized_deeply_nested_and_non_utf8_bodies_are_4xx_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let huge = format!(r#"{{"post_id":"{}"}}"#, "a".repeat(8 * 1024 * 1024));
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested_object = format!(
        r#"{{"post_id":{}1{}}}"#,
        r#"{"a":"#.repeat(5_000),
        "}".repeat(5_000)
    );
    let invalid_utf8: Vec<u8> = b"{\"post_id\":\"\xff\xfe\xfd\"}".to_vec();

    // Act and assert
    for (what, body) in [
        ("an 8 MiB body", huge.into_bytes()),
        ("20,000 nested arrays", nested.into_bytes()),
        ("5,000 nested objects", nested_object.into_bytes()),
        ("invalid UTF-8", invalid_utf8),
    ] {
        for path in ["/v1/likes", "/v1/posts"] {
            let response = app
                .request(Method::POST, path, Some("mallory"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            assert_client_error(&format!("{what} to {path}"), response).await;
        }
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM outbox").await, 0);

    app.stop().await;
}

#[tokio::test]
async fn sql_meta_characters_are_plain_data_or_4xx_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let sneaky_user = "bob'); DELETE FROM likes; --";

    // Act
    let liked = app
        .request(Method::POST, "/v1/likes", Some(sneaky_user))
        .json(&json!({ "post_id": post }))
        .send()
        .await
        .expect("liking");
    let bad_path = app
        .request(Method::GET, "/v1/posts/'%20OR%201=1%20--", None)
        .send()
        .await;
    let bad_body = app
        .request(Method::POST, "/v1/likes", Some("carol"))
        .json(&json!({ "post_id": "'; DROP TABLE posts; --" }))
        .send()
        .await;

    // Assert: the user id is stored as the text it is; the rest is refused.
    assert_eq!(liked.status(), StatusCode::CREATED);
    let stored: String = app
        .db
        .query_one("SELECT user_id FROM likes", &[])
        .await
        .expect("the like")
        .get(0);
    assert_eq!(stored, sneaky_user);
    assert_client_error("SQL in a post id", bad_path).await;
    assert_client_error("SQL in a body's post id", bad_body).await;
    assert_eq!(app.scalar_i64("SELECT count(*) FROM posts").await, 1);

    app.stop().await;
}
