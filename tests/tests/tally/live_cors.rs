//! A page on a listed origin may follow live counts: the stream's answer carries its CORS
//! headers, and the preflight of an `EventSource` reconnect (which sends the non-safelisted
//! `Last-Event-ID`) allows that header.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use tally_tests::TestApp;
use tally_tests::sse::SseReader;

const APP: &str = "http://app.example:5173";

#[tokio::test]
async fn a_listed_origin_may_open_a_stream_and_reconnect_with_last_event_id() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.cors_origins = tally_api::cors::CorsOrigins::parse(APP).ok();
    })
    .await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/live?ids={post}");

    // Act
    let opened = app
        .request(Method::GET, &path, None)
        .header("origin", APP)
        .send()
        .await
        .expect("opening a stream");
    let preflight = app
        .request(Method::OPTIONS, &path, None)
        .header("origin", APP)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .expect("a preflight");

    // Assert
    let allowed_origin = opened
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(allowed_origin.as_deref(), Some(APP));
    let mut stream = SseReader::new(opened);
    assert!(stream.next_event(Duration::from_secs(20)).await.is_some());
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let allowed_headers = preflight
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        allowed_headers.contains("last-event-id"),
        "{allowed_headers}"
    );

    drop(stream);
    app.stop().await;
}
