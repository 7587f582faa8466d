//! A problem's `title` is its status's HTTP reason phrase, the same for every answer of one
//! status: tally's own refusals and poem's (unknown routes, wrong methods, parse errors).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

/// (what, method, path, user, body)
type Case<'a> = (&'a str, Method, String, Option<&'a str>, Option<Value>);

#[tokio::test]
async fn every_error_title_is_the_reason_phrase_of_its_status() {
    // Arrange: one write a second per user, so that a second write is a 429.
    let app = TestApp::spawn_with_api(|config| {
        config.write_rate_per_sec = 1;
        config.write_burst = 1;
    })
    .await;
    let post = app.create_post("alice").await;
    let unknown = uuid::Uuid::now_v7();
    let big = json!({ "body": "a".repeat(70_000) });
    // Each write as a user of its own but the last two.
    let cases: Vec<Case> = vec![
        (
            "a bad path id",
            Method::GET,
            "/v1/posts/x".into(),
            None,
            None,
        ),
        (
            "a bad query",
            Method::GET,
            "/v1/posts?ids=x".into(),
            None,
            None,
        ),
        (
            "a bad body",
            Method::POST,
            "/v1/likes".into(),
            Some("u1"),
            Some(json!({})),
        ),
        (
            "a missing list",
            Method::GET,
            "/v1/posts".into(),
            None,
            None,
        ),
        (
            "no token",
            Method::POST,
            "/v1/posts".into(),
            None,
            Some(json!({})),
        ),
        (
            "not the author",
            Method::DELETE,
            format!("/v1/posts/{post}"),
            Some("u2"),
            None,
        ),
        (
            "an unknown post",
            Method::GET,
            format!("/v1/posts/{unknown}"),
            None,
            None,
        ),
        (
            "an unknown route",
            Method::GET,
            "/v1/nothing".into(),
            None,
            None,
        ),
        (
            "a wrong method",
            Method::PUT,
            "/v1/likes".into(),
            Some("u3"),
            None,
        ),
        (
            "someone else's id",
            Method::POST,
            "/v1/posts".into(),
            Some("u4"),
            Some(json!({ "id": post })),
        ),
        (
            "a large body",
            Method::POST,
            format!("/v1/posts/{post}/comments"),
            Some("u5"),
            Some(big),
        ),
        (
            "a wrong content type",
            Method::POST,
            "/v1/posts".into(),
            Some("u6"),
            None,
        ),
        (
            "a first write",
            Method::POST,
            format!("/v1/likes/{post}/toggle"),
            Some("u7"),
            None,
        ),
        (
            "a write too soon",
            Method::POST,
            format!("/v1/likes/{post}/toggle"),
            Some("u7"),
            None,
        ),
    ];

    // Act
    let mut seen = Vec::new();
    for (what, method, path, user, body) in cases {
        let mut request = app.request(method, &path, user);
        request = match body {
            Some(body) => request.json(&body),
            None if what == "a wrong content type" => {
                request.header("content-type", "text/plain").body("{}")
            }
            None => request,
        };
        let response = request.send().await.expect("an answer");
        if response.status().is_success() {
            continue;
        }
        let (status, body) = problem(response).await;
        seen.push((
            what,
            status,
            body["title"].as_str().unwrap_or_default().to_owned(),
        ));
    }

    // Assert
    let statuses: Vec<u16> = seen.iter().map(|(_, status, _)| status.as_u16()).collect();
    for expected in [400, 401, 403, 404, 405, 409, 413, 415, 429] {
        assert!(
            statuses.contains(&expected),
            "no {expected} among {statuses:?}"
        );
    }
    for (what, status, title) in seen {
        assert_eq!(
            Some(title.as_str()),
            status.canonical_reason(),
            "{what} ({status})"
        );
    }
    assert_eq!(
        StatusCode::TOO_MANY_REQUESTS.canonical_reason(),
        Some("Too Many Requests")
    );

    app.stop().await;
}
