//! At most `TALLY_HTTP_MAX_CONNECTIONS` connections are open at once: one more is accepted
//! only when an open one closes.

use std::io::Read;
use std::time::Duration;

use tally_tests::TestApp;

/// Generous: only here so that a connection never let in fails the test instead of hanging.
const HANG: Duration = Duration::from_secs(60);
const CAP: u32 = 4;

/// Whether the server closed `stream` (end of stream, or a reset), asked of the kernel now.
fn closed(mut stream: &std::net::TcpStream) -> bool {
    let mut byte = [0_u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test]
async fn a_connection_beyond_the_cap_waits_until_an_open_one_is_closed() {
    // Arrange: CAP silent connections, which the server closes after the read timeout
    let app = TestApp::spawn_with_api(|config| {
        config.http_max_connections = CAP;
        config.http_read_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = app.api_url.trim_start_matches("http://").to_owned();
    let held: Vec<std::net::TcpStream> = (0..CAP)
        .map(|_| {
            let stream = std::net::TcpStream::connect(&addr).expect("connecting");
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();

    // Act: one more connection, with an ordinary request
    let client = reqwest::Client::new();
    let answer = tokio::time::timeout(HANG, client.get(format!("{}/healthz", app.api_url)).send())
        .await
        .expect("the request beyond the cap was never let in")
        .expect("a health check");

    // Assert: it was answered, and only after the server had closed a held connection
    assert!(answer.status().is_success(), "{}", answer.status());
    let closed_before = held.iter().filter(|stream| closed(stream)).count();
    assert!(
        closed_before >= 1,
        "answered while {CAP} connections were open"
    );

    app.stop().await;
}
