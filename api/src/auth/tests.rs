//! Token verification: keys, algorithms, and the claims tally checks itself.

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

#[test]
fn a_token_signed_with_the_secret_names_its_user() {
    let keys = TokenKeys::hs256(SECRET);
    let token = keys
        .issue("alice", Duration::from_secs(60))
        .expect("signing");
    assert_eq!(keys.verify(&token).ok().as_deref(), Some("alice"));
}

#[test]
fn tokens_with_alg_none_or_another_key_are_refused() {
    let keys = TokenKeys::hs256(SECRET);
    let other = TokenKeys::hs256(b"another-key-another-key-another-key")
        .issue("alice", Duration::from_secs(60))
        .expect("signing");
    assert!(matches!(keys.verify(&other), Err(AuthError::BadSignature)));
    // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (no signature)
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.\
                eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    assert!(keys.verify(none).is_err());
    assert!(matches!(keys.verify("abc"), Err(AuthError::Malformed)));
}

#[test]
fn a_subject_with_nul_is_refused() {
    let keys = TokenKeys::hs256(SECRET);
    let token = keys
        .issue("al\0ice", Duration::from_secs(60))
        .expect("signing");
    assert!(matches!(
        keys.verify(&token),
        Err(AuthError::BadSubject(UserIdError::Forbidden {
            code: 0,
            ..
        }))
    ));
}

fn signed(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signing")
}

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600
}

#[test]
fn claims_of_the_wrong_type_are_named_as_such_not_as_missing_or_malformed() {
    let keys = TokenKeys::hs256(SECRET);
    let refusal = |claims| keys.verify(&signed(claims)).err().map(|e| e.to_string());
    assert_eq!(
        refusal(serde_json::json!({ "sub": 42, "exp": in_an_hour() })).as_deref(),
        Some("the bearer token's `sub` claim must be a string (the user id)")
    );
    assert_eq!(
        refusal(serde_json::json!({ "sub": "alice", "exp": "tomorrow" })).as_deref(),
        Some(
            "the bearer token's `exp` claim must be a number of seconds since 1970-01-01 \
             UTC, not negative"
        )
    );
    assert_eq!(
        refusal(serde_json::json!({ "sub": "alice" })).as_deref(),
        Some("the bearer token lacks the `exp` claim")
    );
    assert_eq!(
        refusal(serde_json::json!({ "exp": in_an_hour() })).as_deref(),
        Some("the bearer token lacks the `sub` claim")
    );
}

#[test]
fn a_configured_issuer_of_the_wrong_type_is_named_as_such() {
    let mut keys = TokenKeys::hs256(SECRET);
    keys.issuer = Some("https://id.example".into());
    let refusal = |claims| keys.verify(&signed(claims)).err().map(|e| e.to_string());
    assert_eq!(
        refusal(serde_json::json!({ "sub": "a", "exp": in_an_hour(), "iss": 7 })).as_deref(),
        Some("the bearer token's `iss` claim must be a string")
    );
    assert_eq!(
        refusal(serde_json::json!({ "sub": "a", "exp": in_an_hour() })).as_deref(),
        Some("the bearer token lacks the `iss` claim")
    );
}

#[test]
fn subjects_are_normalized_and_held_to_the_user_id_rules() {
    let keys = TokenKeys::hs256(SECRET);
    let verify = |sub: &str| {
        keys.verify(&signed(
            serde_json::json!({ "sub": sub, "exp": in_an_hour() }),
        ))
    };
    assert_eq!(verify("jose\u{301}").ok().as_deref(), Some("jos\u{e9}"));
    for refused in ["  ", "bob\u{202e}", "\u{200b}", "a\u{7}"] {
        assert!(
            matches!(verify(refused), Err(AuthError::BadSubject(_))),
            "{refused:?}"
        );
    }
}
