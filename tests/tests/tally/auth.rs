//! Impersonation: every write refuses a missing, malformed, expired, wrongly signed or
//! `alg: none` token; no one acts for someone else; RS256 and ES256 tokens verify against a
//! configured public key (and only with the algorithm that key is for); a configured issuer
//! and audience are required; writes are rate limited per user.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tally_tests::{TestApp, problem};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Signs `claims` with `alg` and the key in `pem` (a private key) or `secret`.
fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("signing a test token")
}

fn rsa_key() -> EncodingKey {
    let pem = std::fs::read(fixture("rs256-private.pem")).expect("the RSA test key");
    EncodingKey::from_rsa_pem(&pem).expect("an RSA private key")
}

fn ec_key() -> EncodingKey {
    let pem = std::fs::read(fixture("es256-private.pem")).expect("the EC test key");
    EncodingKey::from_ec_pem(&pem).expect("an EC private key")
}

fn valid_claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 3600, "iat": now() })
}

/// Every write operation as (what, method, path, body), on `post` and `comment`.
fn writes(post: &str, comment: &str) -> Vec<(&'static str, Method, String, Option<Value>)> {
    vec![
        (
            "createPost",
            Method::POST,
            "/v1/posts".into(),
            Some(json!({})),
        ),
        (
            "deletePost",
            Method::DELETE,
            format!("/v1/posts/{post}"),
            None,
        ),
        (
            "likePost",
            Method::POST,
            "/v1/likes".into(),
            Some(json!({ "post_id": post })),
        ),
        (
            "unlikePost",
            Method::DELETE,
            format!("/v1/likes/{post}"),
            None,
        ),
        (
            "toggleLike",
            Method::POST,
            format!("/v1/likes/{post}/toggle"),
            None,
        ),
        (
            "addComment",
            Method::POST,
            format!("/v1/posts/{post}/comments"),
            Some(json!({ "body": "hi" })),
        ),
        (
            "deleteComment",
            Method::DELETE,
            format!("/v1/comments/{comment}"),
            None,
        ),
    ]
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: &Option<Value>,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app.request(method.clone(), path, None);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("an answer")
}

#[tokio::test]
async fn every_write_refuses_missing_malformed_expired_forged_and_unsigned_tokens() {
    // Arrange
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    let comment = app.comment("alice", &post, "mine").await;
    let events_before = app.scalar_i64("SELECT count(*) FROM outbox").await;
    let secret = EncodingKey::from_secret(tally_tests::JWT_SECRET.as_bytes());
    let wrong_secret = EncodingKey::from_secret(b"not-the-key-not-the-key-not-the-key-0000");
    let header_none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims_alice = URL_SAFE_NO_PAD.encode(valid_claims("alice").to_string());
    let valid = sign(Algorithm::HS256, &secret, &valid_claims("alice"));
    let tampered = {
        // alice's valid token with bob's claims pasted in: the signature no longer matches.
        let parts: Vec<&str> = valid.split('.').collect();
        let bob = URL_SAFE_NO_PAD.encode(valid_claims("bob").to_string());
        format!("{}.{bob}.{}", parts[0], parts[2])
    };
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("an empty bearer", Some("Bearer ".into())),
        ("another scheme", Some("Basic YWxpY2U6cHc=".into())),
        ("not a JWT", Some("Bearer not.a.jwt".into())),
        ("garbage", Some("Bearer ∞∞∞".into())),
        (
            "expired an hour ago",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &secret,
                    &json!({ "sub": "alice", "exp": now() - 3600 })
                )
            )),
        ),
        (
            "signed with another key",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &wrong_secret, &valid_claims("alice"))
            )),
        ),
        ("tampered claims", Some(format!("Bearer {tampered}"))),
        (
            "alg none",
            Some(format!("Bearer {header_none}.{claims_alice}.")),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &secret, &json!({ "sub": "alice" }))
            )),
        ),
        (
            "not valid for another hour (nbf)",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &secret,
                    &json!({ "sub": "alice", "exp": now() + 7200, "nbf": now() + 3600 })
                )
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &secret, &json!({ "exp": now() + 3600 }))
            )),
        ),
        (
            "an empty sub",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &secret, &valid_claims(""))
            )),
        ),
        (
            "a 129-character sub",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &secret, &valid_claims(&"a".repeat(129)))
            )),
        ),
        (
            "RS256 when only HS256 is configured",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, &rsa_key(), &valid_claims("alice"))
            )),
        ),
    ];

    // Act and assert
    for (write, method, path, body) in writes(&post, &comment) {
        for (what, token) in &tokens {
            let response = send(&app, &method, &path, &body, token.as_deref()).await;
            let (status, problem) = problem(response).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{write} with {what}: {problem}"
            );
        }
    }
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox").await,
        events_before,
        "no refused write wrote an event"
    );

    app.stop().await;
}

#[tokio::test]
async fn no_one_acts_for_someone_else() {
    // Arrange: alice's post with alice's like and comment.
    let app = TestApp::spawn().await;
    let post = app.create_post("alice").await;
    app.like("alice", &post).await;
    let comment = app.comment("alice", &post, "mine").await;
    let as_mallory = |method: Method, path: String, body: Option<Value>| {
        let request = app.request(method, &path, Some("mallory"));
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
    };

    // Act
    let like_as_alice = as_mallory(
        Method::POST,
        "/v1/likes".into(),
        Some(json!({ "post_id": post, "user_id": "alice" })),
    )
    .await
    .expect("an answer");
    let take_post = as_mallory(
        Method::POST,
        "/v1/posts".into(),
        Some(json!({ "id": post })),
    )
    .await
    .expect("an answer");
    let delete_post = as_mallory(Method::DELETE, format!("/v1/posts/{post}"), None)
        .await
        .expect("an answer");
    let delete_comment = as_mallory(Method::DELETE, format!("/v1/comments/{comment}"), None)
        .await
        .expect("an answer");
    let comment_as_alice = as_mallory(
        Method::POST,
        format!("/v1/posts/{post}/comments"),
        Some(json!({ "body": "I am alice", "author_id": "alice" })),
    )
    .await
    .expect("an answer");
    let unlike = as_mallory(Method::DELETE, format!("/v1/likes/{post}"), None)
        .await
        .expect("an answer");

    // Assert
    assert_eq!(problem(like_as_alice).await.0, StatusCode::FORBIDDEN);
    assert_eq!(problem(take_post).await.0, StatusCode::CONFLICT);
    assert_eq!(problem(delete_post).await.0, StatusCode::FORBIDDEN);
    assert_eq!(problem(delete_comment).await.0, StatusCode::FORBIDDEN);
    assert_eq!(problem(comment_as_alice).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        unlike.status(),
        StatusCode::NO_CONTENT,
        "mallory's unlike is about mallory's like"
    );
    let alice_like = app
        .scalar_i64("SELECT count(*) FROM likes WHERE user_id = 'alice'")
        .await;
    assert_eq!(alice_like, 1, "alice's like is untouched");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM comments WHERE deleted_at IS NULL")
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM posts WHERE deleted_at IS NULL")
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE payload->>'actor' = 'mallory'")
            .await,
        0
    );

    app.stop().await;
}

#[tokio::test]
async fn rs256_tokens_verify_against_the_configured_public_key_and_nothing_else_does() {
    // Arrange: an api that trusts an identity provider's RSA key alone, so that a token
    // refused here is refused for its algorithm, not for a signature no key would match.
    let app = TestApp::spawn_with_api(|config| {
        config.jwt_public_key_file = Some(fixture("rs256-public.pem"));
        config.jwt_secret = None;
    })
    .await;
    let rs256 = sign(Algorithm::RS256, &rsa_key(), &valid_claims("idp-user"));
    let es256 = sign(Algorithm::ES256, &ec_key(), &valid_claims("idp-user"));
    let public_pem = std::fs::read(fixture("rs256-public.pem")).expect("the public key");
    // The classic confusion attack: HS256 "signed" with the RSA public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &valid_claims("idp-user"),
    );
    let create = |token: String| {
        app.request(Method::POST, "/v1/posts", None)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
    };

    // Act
    let accepted = create(rs256).await.expect("an answer");
    let wrong_algorithm = create(es256).await.expect("an answer");
    let confusion = create(confused).await.expect("an answer");

    // Assert
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let post: Value = accepted.json().await.expect("a post");
    assert_eq!(post["author_id"], "idp-user");
    let (status, body) = problem(wrong_algorithm).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("ES256")),
        "{body}"
    );
    let (status, body) = problem(confusion).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("signed with HS256")),
        "refused for its algorithm: {body}"
    );

    app.stop().await;
}

#[tokio::test]
async fn es256_tokens_verify_against_a_configured_p256_key() {
    // Arrange: an identity provider's EC key only, no shared secret.
    let app = TestApp::spawn_with_api(|config| {
        config.jwt_public_key_file = Some(fixture("es256-public.pem"));
        config.jwt_secret = None;
    })
    .await;
    let es256 = sign(Algorithm::ES256, &ec_key(), &valid_claims("ec-user"));
    let rs256 = sign(Algorithm::RS256, &rsa_key(), &valid_claims("ec-user"));
    let create = |token: String| {
        app.request(Method::POST, "/v1/posts", None)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
    };

    // Act
    let accepted = create(es256).await.expect("an answer");
    let refused_rs256 = create(rs256).await.expect("an answer");
    let refused_hs256 = create(app.token("hs-user")).await.expect("an answer");

    // Assert
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert_eq!(problem(refused_rs256).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(problem(refused_hs256).await.0, StatusCode::UNAUTHORIZED);

    app.stop().await;
}

#[tokio::test]
async fn a_configured_issuer_and_audience_must_be_present_and_right() {
    // Arrange
    let app = TestApp::spawn_with_api(|config| {
        config.jwt_public_key_file = Some(fixture("rs256-public.pem"));
        config.jwt_issuer = Some("https://id.example".into());
        config.jwt_audience = Some("tally".into());
    })
    .await;
    let exp = now() + 3600;
    let cases = [
        (
            "right iss and aud",
            json!({ "sub": "u", "exp": exp, "iss": "https://id.example", "aud": "tally" }),
            StatusCode::CREATED,
        ),
        (
            "no iss",
            json!({ "sub": "u", "exp": exp, "aud": "tally" }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no aud",
            json!({ "sub": "u", "exp": exp, "iss": "https://id.example" }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another issuer",
            json!({ "sub": "u", "exp": exp, "iss": "https://evil.example", "aud": "tally" }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another audience",
            json!({ "sub": "u", "exp": exp, "iss": "https://id.example", "aud": "billing" }),
            StatusCode::UNAUTHORIZED,
        ),
    ];

    // Act and assert
    for (what, claims, expected) in cases {
        let response = app
            .request(Method::POST, "/v1/posts", None)
            .bearer_auth(sign(Algorithm::RS256, &rsa_key(), &claims))
            .json(&json!({}))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), expected, "{what}");
    }

    app.stop().await;
}

#[tokio::test]
async fn a_user_writing_too_fast_gets_429_with_retry_after_and_others_and_reads_do_not() {
    // Arrange: 1 write a second after a burst of 3.
    let app = TestApp::spawn_with_api(|config| {
        config.write_rate_per_sec = 1;
        config.write_burst = 3;
    })
    .await;
    let post = app.create_post("alice").await;
    let toggle = |user| {
        app.request(
            Method::POST,
            &format!("/v1/likes/{post}/toggle"),
            Some(user),
        )
        .send()
    };

    // Act: carol toggles until refused. At one write a second, 13 writes can only all pass
    // if they take over 10 s: the limit, not the machine's speed, decides.
    let mut passed = 0;
    let mut refused = None;
    for _ in 0..13 {
        let answer = toggle("carol").await.expect("an answer");
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.status(), StatusCode::OK);
        passed += 1;
    }
    let bob = toggle("bob").await.expect("bob's toggle");
    let read = app
        .request(Method::GET, &format!("/v1/posts/{post}"), Some("carol"))
        .send()
        .await
        .expect("a read");

    // Assert
    let refused = refused.expect("a 429 before 13 writes");
    assert!(passed >= 3, "the burst of 3 passes: {passed}");
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(problem(refused).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(bob.status(), StatusCode::OK, "the limit is per user");
    assert_eq!(read.status(), StatusCode::OK, "reads are not limited");
    let events = app
        .scalar_i64("SELECT count(*) FROM outbox WHERE payload->>'actor' = 'carol'")
        .await;
    assert_eq!(events, passed, "the refused write wrote nothing");

    // And after the wait, carol may write again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        toggle("carol").await.expect("an answer").status(),
        StatusCode::OK
    );

    app.stop().await;
}
