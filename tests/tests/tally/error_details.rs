//! A refused request's `detail` says what is wrong in the caller's terms, naming the
//! parameter or body field and what it must be, never the parser's internal type names,
//! validator syntax or positional parameter names.

use reqwest::Method;
use serde_json::json;
use tally_tests::{TestApp, problem};

/// Words of poem-openapi's own messages that mean nothing to a client.
const INTERNALS: &[&str] = &[
    "string_uuid",
    "occurred while parsing",
    "verification failed",
    "pattern(",
    "maxLength(",
    "minimum(",
    "param0",
    "failed to parse",
    "Expected input type",
    "parse request payload",
];

#[tokio::test]
async fn every_parameter_and_field_error_names_it_and_says_what_it_must_be() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    let likes = format!("/v1/posts/{post}/likes");
    let comments = format!("/v1/posts/{post}/comments");
    // (what, method, path, body, words the detail must hold)
    let cases = [
        (
            "a bad path id",
            Method::GET,
            "/v1/posts/not-a-uuid".to_owned(),
            None,
            "the id in the path must be a UUID",
        ),
        (
            "a bad feed id",
            Method::GET,
            "/v1/posts?ids=zz".to_owned(),
            None,
            "`ids` must be 1 to 100 post ids",
        ),
        (
            "101 feed ids",
            Method::GET,
            format!("/v1/posts?ids={}", vec![post.as_str(); 101].join(",")),
            None,
            "`ids` must be 1 to 100",
        ),
        (
            "a bad after_event",
            Method::GET,
            format!("/v1/posts/{post}?after_event=x"),
            None,
            "`after_event` must be an event id",
        ),
        (
            "limit 0",
            Method::GET,
            format!("{likes}?limit=0"),
            None,
            "`limit` must be a whole number from 1 to 100",
        ),
        (
            "limit x",
            Method::GET,
            format!("{comments}?limit=x"),
            None,
            "`limit` must be a whole number",
        ),
        (
            "a foreign cursor",
            Method::GET,
            format!("{likes}?cursor=AAAA"),
            None,
            "`cursor` must be the `next_cursor`",
        ),
        (
            "a bad post_id",
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({ "post_id": "x" })),
            "`post_id` must be the id of the post to like, a UUID",
        ),
        (
            "no post_id",
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({})),
            "`post_id` must be",
        ),
        (
            "a numeric user_id",
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({ "post_id": post, "user_id": 7 })),
            "`user_id` must be a string of 1 to 128",
        ),
        (
            "an empty user_id",
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({ "post_id": post, "user_id": "" })),
            "`user_id` must be a string of 1 to 128",
        ),
        (
            "an unknown field",
            Method::POST,
            "/v1/likes".to_owned(),
            Some(json!({ "post_id": post, "author": "x" })),
            "field `author` that NewLike does not take",
        ),
        (
            "a bad post id in the body",
            Method::POST,
            "/v1/posts".to_owned(),
            Some(json!({ "id": "nope" })),
            "`id` must be a UUID",
        ),
        (
            "an array body",
            Method::POST,
            "/v1/posts".to_owned(),
            Some(json!([])),
            "the body must be a JSON object",
        ),
        (
            "a blank comment",
            Method::POST,
            comments.clone(),
            Some(json!({ "body": " " })),
            "`body` must be a string of 1 to 2000",
        ),
        (
            "a long comment",
            Method::POST,
            comments.clone(),
            Some(json!({ "body": "a".repeat(2001) })),
            "`body` must be a string of 1 to 2000",
        ),
        (
            "a bad comment id",
            Method::POST,
            comments.clone(),
            Some(json!({ "id": 5, "body": "hi" })),
            "`id` must be a UUID",
        ),
    ];

    // Act and assert
    for (what, method, path, body, words) in cases {
        let mut request = app.request(method, &path, Some("bob"));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let (status, problem) = problem(request.send().await.expect("an answer")).await;
        assert_eq!(status, 400, "{what}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{what}: {detail}");
        for internal in INTERNALS {
            assert!(!detail.contains(internal), "{what}: {detail}");
        }
    }

    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_says_so() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;

    // Act
    let response = app
        .request(Method::POST, "/v1/posts", Some("bob"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("an answer");

    // Assert
    let (status, problem) = problem(response).await;
    assert_eq!(status, 400);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("the body is not valid JSON"), "{detail}");
    assert!(!detail.contains("parse request payload"), "{detail}");

    app.stop().await;
}
