//! `TALLY_LIVE_MAX_CONNECTIONS` caps the open live streams: one more is a 503 problem with
//! Retry-After, and the api's other reads are unaffected.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use tally_tests::{TestApp, problem};

#[tokio::test]
async fn a_stream_over_the_cap_is_a_503_problem_with_retry_after() {
    // Arrange: room for one stream, and it is taken.
    let app = TestApp::spawn_with_api(|config| config.live_max_connections = 1).await;
    let post = app.create_post("alice").await;
    let mut open = app.live(&[&post]).await;
    assert!(open.next_event(Duration::from_secs(20)).await.is_some());

    // Act
    let refused = app
        .request(Method::GET, &format!("/v1/live?ids={post}"), None)
        .send()
        .await
        .expect("an answer");

    // Assert
    let retry_after = refused
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    assert!(retry_after.is_some_and(|secs| secs >= 1), "{retry_after:?}");
    let (status, body) = problem(refused).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["type"], "/problems/too-many-streams");
    let feed = app
        .request(Method::GET, &format!("/v1/posts?ids={post}"), None)
        .send()
        .await
        .expect("a feed read");
    assert_eq!(feed.status(), StatusCode::OK);

    drop(open);
    app.stop().await;
}
