//! Bearer-token authentication: verifying the JWTs on requests (HS256 with a shared secret,
//! RS256 or ES256 with an identity provider's public key), and minting dev tokens.
//!
//! Writes take [`BearerAuth`] (a valid token is required); reads take [`ReaderAuth`] (a token
//! is optional, and when present it must be valid, so a client learns its token expired
//! instead of silently reading as nobody). Reading the `Authorization` header and the
//! challenge a refusal carries are in `extract`.

mod extract;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::extract::{BEARER_CHALLENGE, BearerAuth, ReaderAuth, User};
use crate::config::Config;
use crate::text_rules::{self, UserIdError};

/// The longest user id tally stores; `sub` claims beyond it are refused.
pub const MAX_USER_ID_LEN: usize = text_rules::MAX_USER_ID_CHARS;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims of the tokens tally signs (development and tests). `sub` is the user id.
#[derive(Debug, Serialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
}

/// The claims tally checks itself, read as any JSON so that a claim of the wrong type is
/// refused by name ("`sub` must be a string") rather than as a malformed token. jsonwebtoken
/// checks the values of `exp`, `nbf`, `iss` and `aud` when they parse; it treats a claim that
/// does not parse as absent, so presence and type are checked here.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: Option<Value>,
    exp: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
}

/// Why a bearer token was refused. Shown to the client: it names the defect, never the key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this operation needs a bearer token: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("the Authorization header uses the `{0}` scheme; this api takes `Bearer <JWT>`")]
    OtherScheme(String),
    #[error("the Authorization header says `Bearer` but no token follows it")]
    EmptyToken,
    #[error("the Authorization header must be `Bearer <JWT>`, in visible ASCII")]
    NotBearer,
    #[error(
        "the Authorization header is {0} bytes long; this api reads at most \
         {MAX_AUTHORIZATION_BYTES}"
    )]
    TooLong(usize),
    #[error("the request has {0} Authorization headers; send exactly one")]
    Repeated(usize),
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token's signature does not verify")]
    BadSignature,
    #[error("the bearer token is signed with {0}, which this api does not accept (it takes {1})")]
    Algorithm(String, String),
    #[error("the bearer token is not for this api (its `aud` claim)")]
    Audience,
    #[error("the bearer token is from an issuer this api does not trust (its `iss` claim)")]
    Issuer,
    #[error("the bearer token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the bearer token's `{claim}` claim must be {must}")]
    ClaimType {
        claim: &'static str,
        must: &'static str,
    },
    #[error("the bearer token is not valid yet (its `nbf` claim)")]
    NotYetValid,
    #[error("the bearer token is malformed: it is not a signed JWT")]
    Malformed,
    #[error("the bearer token's `sub` claim (the user id) {0}")]
    BadSubject(#[from] UserIdError),
}

/// What a numeric date claim must be.
const NUMERIC_DATE: &str = "a number of seconds since 1970-01-01 UTC, not negative";

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim(claim.clone()),
            ErrorKind::InvalidClaimFormat(claim) if claim == "exp" => Self::ClaimType {
                claim: "exp",
                must: NUMERIC_DATE,
            },
            ErrorKind::InvalidClaimFormat(claim) if claim == "nbf" => Self::ClaimType {
                claim: "nbf",
                must: NUMERIC_DATE,
            },
            _ => Self::Malformed,
        }
    }
}

impl AuthError {
    /// Whether the request carried no bearer credentials at all (no header, or another
    /// scheme): RFC 6750 §3.1 says the challenge then names no error.
    pub fn is_missing_credentials(&self) -> bool {
        matches!(self, Self::Missing | Self::OtherScheme(_))
    }
}

/// The most bytes an `Authorization` header may hold; a longer one is refused before any of it
/// is decoded. Real JWTs are well under 2 KiB, and verifying one (base64, JSON, a signature)
/// costs in proportion to its length, so the cap keeps a client from making the api do that
/// work on hundreds of kilobytes.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// Why the configured keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no token key: set TALLY_JWT_SECRET (HS256) or TALLY_JWT_PUBLIC_KEY_FILE (RS256/ES256)"
    )]
    Missing,
    #[error("TALLY_JWT_PUBLIC_KEY_FILE: could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TALLY_JWT_PUBLIC_KEY_FILE: {path} holds no RSA or EC public key in PEM form")]
    NotAPublicKey { path: PathBuf },
}

/// The keys tokens are checked (and, in development, signed) with.
#[derive(Clone)]
pub struct TokenKeys {
    hs256: Option<(DecodingKey, EncodingKey)>,
    /// RS256 or ES256, and the identity provider's public key.
    public: Option<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithms", &self.accepted())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// HS256 keys from a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            hs256: Some((
                DecodingKey::from_secret(secret),
                EncodingKey::from_secret(secret),
            )),
            public: None,
            issuer: None,
            audience: None,
        }
    }

    /// The keys the configuration names.
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let hs256 = config.jwt_secret.as_ref().map(|secret| {
            (
                DecodingKey::from_secret(secret.as_bytes()),
                EncodingKey::from_secret(secret.as_bytes()),
            )
        });
        let public = match &config.jwt_public_key_file {
            Some(path) => Some(public_key(path)?),
            None => None,
        };
        if hs256.is_none() && public.is_none() {
            return Err(KeyError::Missing);
        }
        Ok(Self {
            hs256,
            public,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        })
    }

    /// The algorithms accepted, for messages.
    fn accepted(&self) -> String {
        let mut names = Vec::new();
        if self.hs256.is_some() {
            names.push("HS256");
        }
        if let Some((alg, _)) = &self.public {
            names.push(if *alg == Algorithm::RS256 {
                "RS256"
            } else {
                "ES256"
            });
        }
        names.join(", ")
    }

    /// Checks signature, algorithm, expiry (and issuer and audience when configured), and
    /// returns the caller's user id (its `sub`, in NFC; see [`text_rules`]).
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        // The header names the algorithm; each algorithm has exactly one key, so a token can
        // never pick the key it is checked with (no HS256 token "signed" with a public key).
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = match (header.alg, &self.hs256, &self.public) {
            (Algorithm::HS256, Some((key, _)), _) => key,
            (alg, _, Some((public_alg, key))) if alg == *public_alg => key,
            (alg, _, _) => return Err(AuthError::Algorithm(format!("{alg:?}"), self.accepted())),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // jsonwebtoken counts a required claim that is there with the wrong type as missing
        // ("lacks `exp`" for `"exp": "tomorrow"`), which sends a token's author looking for
        // the wrong bug: presence and type are checked below instead. It still checks the
        // values of the claims that parse: expiry, `nbf`, issuer and audience.
        validation.required_spec_claims.clear();
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
        }
        let claims = jsonwebtoken::decode::<TokenClaims>(token, key, &validation)?.claims;
        require(claims.exp.as_ref(), "exp", NUMERIC_DATE, Value::is_number)?;
        // An expected issuer or audience must be present, not merely right when present
        // (jsonwebtoken checks a configured `iss`/`aud` only against claims that exist).
        if self.issuer.is_some() {
            require(claims.iss.as_ref(), "iss", "a string", Value::is_string)?;
        }
        if self.audience.is_some() {
            require(
                claims.aud.as_ref(),
                "aud",
                "a string or an array of strings",
                |aud| {
                    aud.is_string()
                        || aud
                            .as_array()
                            .is_some_and(|a| a.iter().all(Value::is_string))
                },
            )?;
        }
        require(
            claims.sub.as_ref(),
            "sub",
            "a string (the user id)",
            Value::is_string,
        )?;
        let sub = claims
            .sub
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(text_rules::user_id(sub)?)
    }

    /// Signs an HS256 token for `user_id` valid for `ttl` (development and tests).
    pub fn issue(
        &self,
        user_id: &str,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let Some((_, encoding)) = &self.hs256 else {
            return Err(ErrorKind::InvalidKeyFormat.into());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
    }
}

/// Refuses a token whose `claim` is absent, or present but not `must` (`is` says which).
fn require(
    value: Option<&Value>,
    claim: &'static str,
    must: &'static str,
    is: impl Fn(&Value) -> bool,
) -> Result<(), AuthError> {
    match value {
        None => Err(AuthError::MissingClaim(claim.into())),
        Some(value) if !is(value) => Err(AuthError::ClaimType { claim, must }),
        Some(_) => Ok(()),
    }
}

/// Reads an RSA or EC public key in PEM form; the key's kind decides the algorithm.
fn public_key(path: &Path) -> Result<(Algorithm, DecodingKey), KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    Err(KeyError::NotAPublicKey {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests;
