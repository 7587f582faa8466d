//! Read-your-writes: a read that names the caller's own event waits until the counts include
//! it, so a frontend can show the exact count right after a like.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::TestApp;

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn reading_after_your_own_like_returns_the_count_that_includes_it() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;
    let (status, like) = json_of(
        app.request(Method::POST, "/v1/likes", Some("bob"))
            .json(&json!({ "post_id": post_id }))
            .send()
            .await
            .expect("liking"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let event_id = like["event_id"].as_str().expect("the like's event id");

    // Act: straight after the write, no polling by the client.
    let (status, read) = json_of(
        app.request(
            Method::GET,
            &format!("/v1/posts/{post_id}?after_event={event_id}"),
            None,
        )
        .send()
        .await
        .expect("reading the post"),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["after_event_applied"], true, "{read}");
    assert_eq!(read["likes"], 1, "{read}");

    app.stop().await;
}

#[tokio::test]
async fn a_feed_read_after_your_own_like_bypasses_the_cache_and_includes_it() {
    // Arrange: the post is read into the counts cache before the like.
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;
    let (_, cached) = json_of(
        app.request(Method::GET, &format!("/v1/posts?ids={post_id}"), None)
            .send()
            .await
            .expect("a feed read"),
    )
    .await;
    assert_eq!(cached["posts"][0]["likes"], 0);
    let (_, like) = json_of(
        app.request(Method::POST, "/v1/likes", Some("bob"))
            .json(&json!({ "post_id": post_id }))
            .send()
            .await
            .expect("liking"),
    )
    .await;
    let event_id = like["event_id"].as_str().expect("the like's event id");

    // Act
    let (status, read) = json_of(
        app.request(
            Method::GET,
            &format!("/v1/posts?ids={post_id}&after_event={event_id}"),
            None,
        )
        .send()
        .await
        .expect("a feed read"),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["after_event_applied"], true, "{read}");
    assert_eq!(read["posts"][0]["likes"], 1, "{read}");

    app.stop().await;
}

#[tokio::test]
async fn an_event_that_never_comes_is_reported_not_applied_after_the_wait() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = app.create_post("alice").await;
    let unknown = uuid::Uuid::now_v7();

    // Act
    let (status, read) = json_of(
        app.request(
            Method::GET,
            &format!("/v1/posts/{post_id}?after_event={unknown}"),
            None,
        )
        .send()
        .await
        .expect("reading the post"),
    )
    .await;
    let plain = app
        .request(Method::GET, &format!("/v1/posts/{post_id}"), None)
        .send()
        .await
        .expect("reading the post");
    let (_, plain) = json_of(plain).await;

    // Assert: an answer all the same, saying the counts may trail; no field without asking.
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["after_event_applied"], false, "{read}");
    assert!(plain.get("after_event_applied").is_none(), "{plain}");

    app.stop().await;
}

#[tokio::test]
async fn a_malformed_after_event_is_a_400_problem() {
    // Arrange
    let app = TestApp::spawn().await;
    let post_id = uuid::Uuid::now_v7();

    // Act
    let response = app
        .request(
            Method::GET,
            &format!("/v1/posts/{post_id}?after_event=not-an-event"),
            None,
        )
        .send()
        .await
        .expect("an answer");

    // Assert
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );

    app.stop().await;
}
