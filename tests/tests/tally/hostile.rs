//! Hostile input: whatever a client sends, the api answers with a 4xx problem (or accepts the
//! input as plain data), never a 5xx, a panic or a dropped connection.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asserts a 4xx `application/problem+json` answer whose body repeats its status.
async fn assert_client_error(what: &str, response: Result<reqwest::Response, reqwest::Error>) {
    let response = response.unwrap_or_else(|err| panic!("{what}: no answer ({err})"));
    let status = response.status();
    assert!(status.is_client_error(), "{what}: got {status}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "{what}");
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|err| panic!("{what}: not JSON ({err})"));
    assert_eq!(body["status"], status.as_u16(), "{what}: {body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "{what}: no {field} in {body}");
    }
}

#[tokio::test]
async fn oversized_deeply_nested_and_non_utf8_bodies_are_4xx_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let huge = format!(r#"{{"post_id":"{}"}}"#, "a".repeat(8 * 1024 * 1024));
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested_object = format!(
        r#"{{"post_id":{}1{}}}"#,
        r#"{"a":"#.repeat(5_000),
        "}".repeat(5_000)
    );
    let invalid_utf8: Vec<u8> = b"{\"post_id\":\"\xff\xfe\xfd\"}".to_vec();

    // Act and assert
    for (what, body) in [
        ("an 8 MiB body", huge.into_bytes()),
        ("20,000 nested arrays", nested.into_bytes()),
        ("5,000 nested objects", nested_object.into_bytes()),
        ("invalid UTF-8", invalid_utf8),
    ] {
        for path in ["/v1/likes", "/v1/posts"] {
            let response = app
                .request(Method::POST, path, Some("mallory"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            assert_client_error(&format!("{what} to {path}"), response).await;
        }
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM outbox").await, 0);

    app.stop().await;
}

#[tokio::test]
async fn sql_meta_characters_are_plain_data_or_4xx_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let sneaky_user = "bob'); DELETE FROM likes; --";

    // Act
    let liked = app
        .request(Method::POST, "/v1/likes", Some(sneaky_user))
        .json(&json!({ "post_id": post }))
        .send()
        .await
        .expect("liking");
    let bad_path = app
        .request(Method::GET, "/v1/posts/'%20OR%201=1%20--", None)
        .send()
        .await;
    let bad_body = app
        .request(Method::POST, "/v1/likes", Some("carol"))
        .json(&json!({ "post_id": "'; DROP TABLE posts; --" }))
        .send()
        .await;

    // Assert: the user id is stored as the text it is; the rest is refused.
    assert_eq!(liked.status(), StatusCode::CREATED);
    let stored: String = app
        .db
        .query_one("SELECT user_id FROM likes", &[])
        .await
        .expect("the like")
        .get(0);
    assert_eq!(stored, sneaky_user);
    assert_client_error("SQL in a post id", bad_path).await;
    assert_client_error("SQL in a body's post id", bad_body).await;
    assert_eq!(app.scalar_i64("SELECT count(*) FROM posts").await, 1);

    app.stop().await;
}

#[tokio::test]
async fn ten_thousand_ids_zero_and_negative_limits_and_forged_cursors_are_4xx_problems() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let ten_thousand: Vec<String> = (0..10_000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let ids = ten_thousand.join(",");

    // Act and assert
    // 10,000 ids make a 370 kB URL, past the 64 kB any URI may have in hyper (and the http
    // crate): hyper answers 414 itself, before tally sees the request, so without a problem
    // body; but it answers, and the connection is not just dropped.
    let (status, head, _) = raw_get(&app, &format!("/v1/posts?ids={ids}")).await;
    assert_eq!(status, 414, "10,000 ids: {head}");
    for (what, path) in [
        (
            "1,500 ids (a 55 kB URL)",
            format!("/v1/posts?ids={}", ten_thousand[..1_500].join(",")),
        ),
        (
            "101 ids",
            format!("/v1/posts?ids={}", ten_thousand[..101].join(",")),
        ),
        ("limit 0", format!("/v1/posts/{post}/likes?limit=0")),
        ("limit -5", format!("/v1/posts/{post}/comments?limit=-5")),
        ("limit 1e3", format!("/v1/posts/{post}/likes?limit=1e3")),
        (
            "a forged cursor",
            format!("/v1/posts/{post}/likes?cursor=AAAA"),
        ),
        (
            "a cursor of SQL",
            format!("/v1/posts/{post}/comments?cursor=%27%3B%20DROP%20TABLE%20likes%3B--"),
        ),
    ] {
        let response = app.request(Method::GET, &path, None).send().await;
        assert_client_error(what, response).await;
    }

    app.stop().await;
}

/// Sends `GET path` over a plain TCP connection (for requests no HTTP client library will
/// build, like a 370 kB URL) and returns the status, the head and the body of the answer.
async fn raw_get(app: &TestApp, path: &str) -> (u16, String, String) {
    let addr = app.api_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to the api");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the request");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("reading the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}
