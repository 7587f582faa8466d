//! HTTP caching of the post reads: a strong `ETag` that follows the counts, `If-None-Match`
//! answered 304 without a body, and a `Cache-Control` that is public for anonymous reads and
//! private when a bearer token makes the answer the reader's own.

use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, VARY};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tally_tests::TestApp;

/// `GET path` as `user` (None: anonymous), with `If-None-Match` when given.
async fn read(
    app: &TestApp,
    path: &str,
    user: Option<&str>,
    if_none_match: Option<&str>,
) -> reqwest::Response {
    let mut request = app.request(Method::GET, path, user);
    if let Some(tag) = if_none_match {
        request = request.header(IF_NONE_MATCH, tag);
    }
    request.send().await.expect("an answer")
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(&name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_owned()
}

#[tokio::test]
async fn the_feeds_etag_stays_while_counts_stay_and_changes_once_a_like_is_counted() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts?ids={post}");
    let first = header(&read(&app, &path, None, None).await, ETAG);
    let again = header(&read(&app, &path, None, None).await, ETAG);

    // Act
    app.like("bob", &post).await.expect("a new like");
    let changed = TestApp::eventually(Duration::from_secs(10), || async {
        let response = read(&app, &path, None, None).await;
        let tag = header(&response, ETAG);
        let body: Value = response.json().await.expect("a feed");
        (body["posts"][0]["likes"] == 1).then_some(tag)
    })
    .await
    .expect("the feed never showed the like");

    // Assert
    assert_eq!(first, again, "unchanged counts, same tag");
    assert!(
        first.starts_with('"') && !first.starts_with("W/"),
        "{first}"
    );
    assert_ne!(first, changed, "a counted like changes the tag");

    app.stop().await;
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_a_304_with_the_etag_and_no_body() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    for path in [format!("/v1/posts?ids={post}"), format!("/v1/posts/{post}")] {
        let tag = header(&read(&app, &path, None, None).await, ETAG);

        // Act
        let matched = read(&app, &path, None, Some(&tag)).await;
        let other = read(&app, &path, None, Some("\"not-it\"")).await;

        // Assert
        assert_eq!(matched.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&matched, ETAG), tag, "{path}");
        assert_eq!(header(&matched, CACHE_CONTROL), "public, max-age=1");
        assert!(matched.bytes().await.expect("a body").is_empty(), "{path}");
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }

    app.stop().await;
}

#[tokio::test]
async fn anonymous_reads_are_public_and_token_reads_private_varying_on_authorization() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;

    for path in [format!("/v1/posts?ids={post}"), format!("/v1/posts/{post}")] {
        // Act
        let anonymous = read(&app, &path, None, None).await;
        let signed_in = read(&app, &path, Some("bob"), None).await;

        // Assert
        assert_eq!(header(&anonymous, CACHE_CONTROL), "public, max-age=1");
        assert_eq!(header(&signed_in, CACHE_CONTROL), "private, no-cache");
        for response in [&anonymous, &signed_in] {
            assert_eq!(header(response, VARY), "Authorization, Accept-Encoding");
        }
        assert_ne!(header(&anonymous, ETAG), header(&signed_in, ETAG), "{path}");
    }

    app.stop().await;
}

#[tokio::test]
async fn an_after_event_read_stays_exact_and_must_be_revalidated() {
    // Arrange: the feed is cached before the like.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    read(&app, &format!("/v1/posts?ids={post}"), None, None).await;
    let event = app.like("bob", &post).await.expect("a new like");

    // Act
    let path = format!("/v1/posts?ids={post}&after_event={event}");
    let response = read(&app, &path, None, None).await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CACHE_CONTROL), "public, no-cache");
    let body: Value = response.json().await.expect("a feed");
    assert_eq!(body["after_event_applied"], true, "{body}");
    assert_eq!(body["posts"][0]["likes"], 1, "{body}");

    app.stop().await;
}
