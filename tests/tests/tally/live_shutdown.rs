//! An api with open live streams stops promptly on SIGTERM: the streams end cleanly instead
//! of holding the graceful shutdown for its whole grace period.

use std::time::{Duration, Instant};

use tally_tests::cluster::free_port;
use tally_tests::process::ServiceProcess;
use tally_tests::{JWT_SECRET, TestApp, postgres};

#[tokio::test]
async fn sigterm_with_an_open_stream_ends_it_and_exits_promptly() {
    // Arrange: a second api, as its own process, with a stream open on it.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut api = ServiceProcess::spawn(
        "tally-api",
        &[
            ("DATABASE_URL", postgres().url_as("tally_api", &app.db_name)),
            ("NATS_URL", app.nats.url()),
            ("TALLY_HTTP_ADDR", addr.clone()),
            ("TALLY_JWT_SECRET", JWT_SECRET.to_owned()),
        ],
    );
    let up = TestApp::eventually(Duration::from_secs(30), || async {
        let answer = reqwest::get(format!("http://{addr}/healthz")).await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    assert!(up.is_some(), "the api did not come up: {}", api.log());
    let response = reqwest::get(format!("http://{addr}/v1/live?ids={post}"))
        .await
        .expect("opening a stream");
    let mut stream = tally_tests::sse::SseReader::new(response);
    assert!(stream.next_event(Duration::from_secs(20)).await.is_some());

    // Act
    let signalled = Instant::now();
    let status = api.terminate(Duration::from_secs(8)).await;
    let took = signalled.elapsed();

    // Assert: well inside the 10 s grace period, a clean exit, and the stream ended.
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?} after {took:?}: {}",
        api.log()
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let after = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(
        matches!(after, Ok(None)),
        "the stream did not end: {after:?}"
    );

    app.stop().await;
}
