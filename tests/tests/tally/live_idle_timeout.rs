//! A live stream is an answer still being sent, not an idle connection: it outlives
//! `TALLY_HTTP_IDLE_TIMEOUT_SECS` (which only bounds the wait between requests).

use std::time::Duration;

use tally_tests::TestApp;

#[tokio::test]
async fn a_stream_outlives_the_idle_timeout_and_still_pushes() {
    // Arrange: connections idle for a second are closed.
    let app = TestApp::spawn_with_api(|config| {
        config.http_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let post = app.create_post("alice").await;
    let mut stream = app.live(&[&post]).await;
    assert!(stream.next_event(Duration::from_secs(20)).await.is_some());

    // Act: stay quiet three idle timeouts long, then like.
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.like("bob", &post).await;

    // Assert
    let (seen, arrived) = stream
        .counts_until(Duration::from_secs(20), |counts| counts["likes"] == 1)
        .await;
    assert!(arrived, "the stream was cut: {seen:?}");

    drop(stream);
    app.stop().await;
}
