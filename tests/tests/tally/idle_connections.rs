//! A kept-alive connection waits at most `TALLY_HTTP_IDLE_TIMEOUT_SECS` for its next request,
//! then the api closes it.

use std::time::Duration;

use tally_tests::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: only here so that a connection never closed fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_kept_alive_connection_without_a_next_request_is_closed_after_the_idle_timeout() {
    // Arrange: the read timeout is far off, so only the idle timeout can end the connection
    let app = TestApp::spawn_with_api(|config| {
        config.http_read_timeout = Duration::from_secs(3600);
        config.http_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = app.api_url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connecting");

    // Act: one request, then nothing
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sending");
    let mut received = Vec::new();
    let read = tokio::time::timeout(HANG, stream.read_to_end(&mut received)).await;

    // Assert: answered once, kept alive, then closed by the server
    read.expect("the idle connection was never closed")
        .expect("reading");
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert_eq!(received.matches("HTTP/1.1 ").count(), 1, "{received}");

    app.stop().await;
}
