//! Browsers on other origins (CORS): listed origins may read and write, `*` lets any origin
//! read but never write, and any other origin gets no CORS header at all.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tally_tests::TestApp;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `OPTIONS path` as a browser's preflight from `origin` for `method`.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.request(Method::OPTIONS, path, None)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type, traceparent",
        )
        .send()
        .await
        .expect("a preflight")
}

fn assert_no_cors(what: &str, headers: &HeaderMap) {
    for (name, _) in headers {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{what}: {name} in {headers:?}"
        );
    }
}

#[tokio::test]
async fn a_listed_origin_may_preflight_write_and_read_every_answer() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.cors_origins = tally_api::cors::CorsOrigins::parse(APP).ok();
    })
    .await;
    let post = app.create_post("alice").await;

    // Act
    let pre = preflight(&app, "/v1/likes", APP, "POST").await;
    let liked = app
        .request(Method::POST, "/v1/likes", Some("bob"))
        .header("origin", APP)
        .json(&serde_json::json!({ "post_id": post }))
        .send()
        .await
        .expect("liking");
    let refused = app
        .request(Method::DELETE, &format!("/v1/likes/{post}"), None)
        .header("origin", APP)
        .send()
        .await
        .expect("unliking without a token");

    // Assert
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    let headers = pre.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), APP);
    let methods = header(headers, "access-control-allow-methods");
    for method in ["GET", "POST", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    assert_eq!(
        header(headers, "access-control-allow-headers"),
        "authorization, content-type, traceparent, last-event-id"
    );
    assert!(
        header(headers, "access-control-max-age")
            .parse::<u32>()
            .is_ok()
    );
    assert_eq!(liked.status(), StatusCode::CREATED);
    assert_eq!(header(liked.headers(), "access-control-allow-origin"), APP);
    let exposed = header(liked.headers(), "access-control-expose-headers");
    for name in [
        "Tally-Event-Id",
        "Retry-After",
        "Location",
        "WWW-Authenticate",
        "ETag",
    ] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        APP
    );

    app.stop().await;
}

#[tokio::test]
async fn an_origin_not_on_the_list_gets_no_cors_headers() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.cors_origins = tally_api::cors::CorsOrigins::parse(APP).ok();
    })
    .await;
    let post = app.create_post("alice").await;

    // Act
    let pre = preflight(&app, &format!("/v1/posts/{post}"), EVIL, "GET").await;
    let read = app
        .request(Method::GET, &format!("/v1/posts/{post}"), None)
        .header("origin", EVIL)
        .send()
        .await
        .expect("reading");

    // Assert
    assert!(!pre.status().is_success(), "{}", pre.status());
    assert_no_cors("preflight", pre.headers());
    assert_eq!(read.status(), StatusCode::OK);
    assert_no_cors("read", read.headers());

    app.stop().await;
}

#[tokio::test]
async fn the_wildcard_lets_any_origin_read_but_never_write() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.cors_origins = tally_api::cors::CorsOrigins::parse("*").ok();
    })
    .await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts/{post}");

    // Act
    let read_pre = preflight(&app, &path, EVIL, "GET").await;
    let read = app
        .request(Method::GET, &path, Some("bob"))
        .header("origin", EVIL)
        .send()
        .await
        .expect("reading");
    let write_pre = preflight(&app, "/v1/likes", EVIL, "POST").await;
    let delete_pre = preflight(&app, &path, EVIL, "DELETE").await;
    let write = app
        .request(Method::POST, "/v1/likes", Some("bob"))
        .header("origin", EVIL)
        .json(&serde_json::json!({ "post_id": post }))
        .send()
        .await
        .expect("liking");

    // Assert
    assert_eq!(read_pre.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(read_pre.headers(), "access-control-allow-origin"),
        "*"
    );
    assert_eq!(
        header(read_pre.headers(), "access-control-allow-methods"),
        "GET, HEAD"
    );
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(header(read.headers(), "access-control-allow-origin"), "*");
    for (what, pre) in [("POST", write_pre), ("DELETE", delete_pre)] {
        assert!(!pre.status().is_success(), "{what}: {}", pre.status());
        assert_no_cors(what, pre.headers());
    }
    assert_no_cors("the write", write.headers());

    app.stop().await;
}

#[tokio::test]
async fn without_cors_origins_there_is_no_cors() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;

    // Act
    let pre = preflight(&app, "/v1/likes", APP, "POST").await;
    let read = app
        .request(Method::GET, &format!("/v1/posts/{post}"), None)
        .header("origin", APP)
        .send()
        .await
        .expect("reading");

    // Assert
    assert_eq!(pre.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_no_cors("preflight", pre.headers());
    assert_eq!(read.status(), StatusCode::OK);
    assert_no_cors("read", read.headers());

    app.stop().await;
}

#[tokio::test]
async fn an_answer_without_an_origin_still_varies_on_origin() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.cors_origins = tally_api::cors::CorsOrigins::parse(APP).ok();
    })
    .await;
    let post = app.create_post("alice").await;

    // Act
    let read = app
        .request(Method::GET, &format!("/v1/posts/{post}"), None)
        .send()
        .await
        .expect("a same-origin read");

    // Assert: a shared cache must not hand this answer to a page on another origin.
    assert_eq!(read.status(), StatusCode::OK);
    // (Beside the read's own `Vary: Authorization, Accept-Encoding`: several Vary fields
    // add up, RFC 9110 §12.5.5.)
    let vary: Vec<&str> = read
        .headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim))
        .collect();
    assert!(vary.contains(&"Origin"), "{vary:?}");
    assert_no_cors("a same-origin read", read.headers());

    app.stop().await;
}
