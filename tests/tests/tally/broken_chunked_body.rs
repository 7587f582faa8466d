//! A body whose chunked encoding is broken is a 400 problem in the caller's terms, never the
//! HTTP library's own error text, and nothing is written.

use std::time::Duration;

use tally_tests::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: only here so that an answer never sent fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_body_with_a_broken_chunked_encoding_is_a_400_problem_without_internals() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    let addr = app.api_url.trim_start_matches("http://").to_owned();
    let token = app.token("bob");
    // A first chunk of JSON, then a chunk size that is not hexadecimal.
    let first = format!("{{\"post_id\":\"{post}\"");
    let request = format!(
        "POST /v1/likes HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\
         \r\n{:x}\r\n{first}\r\nzz\r\n}}\r\n0\r\n\r\n",
        first.len()
    );

    // Act
    let mut stream = TcpStream::connect(&addr).await.expect("connecting");
    stream.write_all(request.as_bytes()).await.expect("sending");
    let mut answer = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut answer))
        .await
        .expect("the api never answered")
        .expect("reading the answer");
    let answer = String::from_utf8_lossy(&answer);

    // Assert
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("the body could not be read"), "{answer}");
    for internal in ["chunk size", "hyper", "Invalid", "error reading"] {
        assert!(!answer.contains(internal), "{internal:?} in {answer}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);

    app.stop().await;
}
