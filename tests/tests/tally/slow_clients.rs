//! Slow clients cannot hold the api: a request must arrive in full within
//! `TALLY_HTTP_READ_TIMEOUT_SECS` (a trickling body gets a 408 problem, a connection that
//! sends nothing is closed), while ordinary requests keep being answered.

use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use tally_tests::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: only here so that a connection never closed fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);
const EACH_KIND: usize = 150;

/// Everything the server sends until it closes the connection.
async fn until_closed(mut stream: TcpStream) -> String {
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received).await;
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn three_hundred_slow_connections_are_closed_while_ordinary_requests_answer() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.http_read_timeout = Duration::from_secs(2);
        config.http_idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let post = app.create_post("alice").await;
    let addr = app.api_url.trim_start_matches("http://").to_owned();
    let token = app.token("mallory");
    // Headers, then 10 of the 100 promised body bytes.
    let trickle = format!(
        "POST /v1/likes HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"post_id\""
    );
    let mut trickling = Vec::new();
    let mut silent = Vec::new();
    for _ in 0..EACH_KIND {
        let mut stream = TcpStream::connect(&addr).await.expect("connecting");
        stream.write_all(trickle.as_bytes()).await.expect("sending");
        trickling.push(stream);
        silent.push(TcpStream::connect(&addr).await.expect("connecting"));
    }

    // Act: ordinary requests while all of them are held open
    for _ in 0..20 {
        let read = app.request(Method::GET, &format!("/v1/posts/{post}"), None);
        let response = tokio::time::timeout(HANG, read.send())
            .await
            .expect("an ordinary request hung")
            .expect("reading");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let trickled = tokio::time::timeout(HANG, join_all(trickling.into_iter().map(until_closed)));
    let trickled = trickled
        .await
        .expect("a trickling connection was never closed");
    let silence = tokio::time::timeout(HANG, join_all(silent.into_iter().map(until_closed)));
    let silence = silence.await.expect("a silent connection was never closed");

    // Assert
    for answer in &trickled {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("application/problem+json") && answer.contains("request-timeout"),
            "{answer}"
        );
    }
    assert!(silence.iter().all(String::is_empty), "{silence:?}");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM likes").await, 0);

    app.stop().await;
}
