//! Refused tokens say why, in the problem's `detail` and in an RFC 6750 `WWW-Authenticate`
//! challenge: no credentials get the bare challenge, a refused token `error="invalid_token"`
//! with a description; two `Authorization` headers are a 400 and one over 8 KiB is refused
//! before it is verified; claims of the wrong type are named as such.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

fn sign(claims: &Value) -> String {
    let key = EncodingKey::from_secret(tally_tests::JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("signing")
}

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600
}

/// Creates a post with these `Authorization` header values; the status, the challenge (if
/// any) and the problem's detail.
async fn create_post(
    app: &TestApp,
    authorization: &[&str],
) -> (StatusCode, Option<String>, String) {
    let mut request = app
        .request(Method::POST, "/v1/posts", None)
        .json(&json!({}));
    for value in authorization {
        request = request.header("authorization", *value);
    }
    let response = request.send().await.expect("an answer");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = problem(response).await;
    let detail = body["detail"].as_str().unwrap_or_default().to_owned();
    (status, challenge, detail)
}

/// (what, `Authorization` values, status, the bare challenge or None for an invalid_token
/// one, words the detail must hold)
type Case<'a> = (&'a str, Vec<&'a str>, StatusCode, Option<&'a str>, &'a str);

#[tokio::test]
async fn every_refusal_names_its_cause_in_the_detail_and_the_challenge() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let numeric_sub = format!(
        "Bearer {}",
        sign(&json!({ "sub": 42, "exp": in_an_hour() }))
    );
    let string_exp = format!(
        "Bearer {}",
        sign(&json!({ "sub": "alice", "exp": "tomorrow" }))
    );
    let expired = format!(
        "Bearer {}",
        sign(&json!({ "sub": "alice", "exp": 1_000_000 }))
    );
    let bare = r#"Bearer realm="tally""#;

    // Act and assert
    let cases: Vec<Case> = vec![
        (
            "no header",
            vec![],
            StatusCode::UNAUTHORIZED,
            Some(bare),
            "needs a bearer token",
        ),
        (
            "Basic",
            vec!["Basic YWxpY2U6cHc="],
            StatusCode::UNAUTHORIZED,
            Some(bare),
            "`Basic` scheme",
        ),
        (
            "an empty bearer",
            vec!["Bearer "],
            StatusCode::UNAUTHORIZED,
            None,
            "no token follows it",
        ),
        (
            "a numeric sub",
            vec![numeric_sub.as_str()],
            StatusCode::UNAUTHORIZED,
            None,
            "`sub` claim must be a string",
        ),
        (
            "a string exp",
            vec![string_exp.as_str()],
            StatusCode::UNAUTHORIZED,
            None,
            "`exp` claim must be a number",
        ),
        (
            "expired",
            vec![expired.as_str()],
            StatusCode::UNAUTHORIZED,
            None,
            "has expired",
        ),
        (
            "two headers",
            vec!["Bearer a", "Bearer b"],
            StatusCode::BAD_REQUEST,
            None,
            "2 Authorization headers",
        ),
    ];
    for (what, headers, status, challenge, words) in cases {
        let (got_status, got_challenge, detail) = create_post(&app, &headers).await;
        assert_eq!(got_status, status, "{what}: {detail}");
        assert!(detail.contains(words), "{what}: {detail}");
        match (status, challenge) {
            (StatusCode::UNAUTHORIZED, Some(expected)) => {
                assert_eq!(got_challenge.as_deref(), Some(expected), "{what}")
            }
            (StatusCode::UNAUTHORIZED, None) => assert_eq!(
                got_challenge,
                Some(format!(
                    r#"Bearer realm="tally", error="invalid_token", error_description="{detail}""#
                )),
                "{what}"
            ),
            _ => {}
        }
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM posts").await, 0);

    app.stop().await;
}

#[tokio::test]
async fn two_authorization_headers_are_refused_even_when_the_first_is_valid() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let alice = format!("Bearer {}", app.token("alice"));
    let post = app.create_post("alice").await;

    // Act
    let write = create_post(&app, &[&alice, "Bearer forged"]).await;
    let read = app
        .request(Method::GET, &format!("/v1/posts/{post}"), None)
        .header("authorization", &alice)
        .header("authorization", &alice)
        .send()
        .await
        .expect("an answer");

    // Assert
    assert_eq!(write.0, StatusCode::BAD_REQUEST, "{}", write.2);
    assert_eq!(problem(read).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM posts").await, 1);

    app.stop().await;
}

#[tokio::test]
async fn an_authorization_header_over_8_kib_is_refused_unverified() {
    // Arrange: a token that would verify, padded past the limit with a claim of its own.
    let app = TestApp::spawn_without_updater().await;
    let padded = sign(&json!({ "sub": "alice", "exp": in_an_hour(), "pad": "x".repeat(9000) }));
    let fits = sign(&json!({ "sub": "alice", "exp": in_an_hour(), "pad": "x".repeat(5000) }));
    let long = format!("Bearer {padded}");
    let short = format!("Bearer {fits}");

    // Act
    let refused = create_post(&app, &[&long]).await;
    let read = app
        .request(
            Method::GET,
            "/v1/posts?ids=0193c3a4-7f1e-7cc0-8d3a-1a2b3c4d5e6f",
            None,
        )
        .header("authorization", &long)
        .send()
        .await
        .expect("an answer");
    let accepted = create_post_status(&app, &short).await;

    // Assert
    assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "{}", refused.2);
    assert!(refused.2.contains("at most 8192"), "{}", refused.2);
    assert!(
        refused
            .1
            .is_some_and(|c| c.contains(r#"error="invalid_token""#))
    );
    assert_eq!(problem(read).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(accepted, StatusCode::CREATED, "a 7 KB token still verifies");

    app.stop().await;
}

async fn create_post_status(app: &TestApp, authorization: &str) -> StatusCode {
    app.request(Method::POST, "/v1/posts", None)
        .header("authorization", authorization)
        .json(&json!({}))
        .send()
        .await
        .expect("an answer")
        .status()
}

#[tokio::test]
async fn a_read_with_a_refused_token_carries_the_challenge_and_one_without_reads_anonymously() {
    // Arrange
    let app = TestApp::spawn_without_updater().await;
    let post = app.create_post("alice").await;
    let path = format!("/v1/posts/{post}/likes");

    // Act
    let refused = app
        .request(Method::GET, &path, None)
        .header("authorization", "Bearer not.a.jwt")
        .send()
        .await
        .expect("an answer");
    let anonymous = app
        .request(Method::GET, &path, None)
        .send()
        .await
        .expect("an answer");

    // Assert
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = problem(refused).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge,
        Some(format!(
            r#"Bearer realm="tally", error="invalid_token", error_description="{}""#,
            body["detail"].as_str().unwrap_or_default()
        ))
    );
    assert_eq!(anonymous.status(), StatusCode::OK);

    app.stop().await;
}
