//! Bearer-token authentication: verifying the JWTs on requests (HS256 with a shared secret,
//! RS256 or ES256 with an identity provider's public key), and minting dev tokens.
//!
//! Writes take [`BearerAuth`] (a valid token is required); reads take [`ReaderAuth`] (a token
//! is optional, and when present it must be valid, so a client learns its token expired
//! instead of silently reading as nobody).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::Request;
use poem::http::header::AUTHORIZATION;
use poem_openapi::{SecurityScheme, auth::Bearer};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::problem::Problem;

/// The longest user id tally stores; `sub` claims beyond it are refused.
pub const MAX_USER_ID_LEN: usize = 128;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims of the tokens tally signs (development and tests). `sub` is the user id.
#[derive(Debug, Serialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
}

/// The claim tally reads from a verified token; validation has checked the others (`exp`,
/// `nbf`, `iss`, `aud`). Optional here so that a token without it is refused by name
/// ("lacks the `sub` claim") rather than as malformed.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: Option<String>,
}

/// Why a bearer token was refused. Shown to the client: it names the defect, never the key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
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
    #[error("the bearer token is not valid yet (its `nbf` claim)")]
    NotYetValid,
    #[error("the bearer token is malformed: it is not a signed JWT")]
    Malformed,
    #[error("the token's sub claim must be 1 to {MAX_USER_ID_LEN} characters, without NUL")]
    BadSubject,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim(claim.clone()),
            _ => Self::Malformed,
        }
    }
}

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
    /// returns the caller's user id.
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
        // An expected issuer or audience must be present, not merely right when present
        // (jsonwebtoken checks a configured `iss`/`aud` only against claims that exist).
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<TokenClaims>(token, key, &validation)?;
        let sub = data
            .claims
            .sub
            .ok_or(AuthError::MissingClaim("sub".into()))?;
        // Postgres text cannot hold NUL: such an id could never be stored.
        if sub.is_empty() || sub.chars().count() > MAX_USER_ID_LEN || sub.contains('\0') {
            return Err(AuthError::BadSubject);
        }
        Ok(sub)
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

/// The authenticated caller of a write operation.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
}

/// `Authorization: Bearer <JWT>`; the token's `sub` is the caller's user id.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub User);

fn keys(req: &Request) -> poem::Result<&TokenKeys> {
    req.data::<Arc<TokenKeys>>()
        .map(Arc::as_ref)
        .ok_or_else(|| {
            tracing::error!("token keys are missing from the request data");
            Problem::internal().into()
        })
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<User> {
    keys(req)?
        .verify(&bearer.token)
        .map(|id| User { id })
        .map_err(|err| Problem::unauthorized(err.to_string()).into())
}

/// A read's caller: anyone, or a user with a valid bearer token.
#[derive(Debug, SecurityScheme)]
pub enum ReaderAuth {
    Bearer(BearerAuth),
    #[oai(fallback)]
    Anonymous,
}

impl ReaderAuth {
    /// The reading user's id, None for an anonymous read; a 401 problem when the request
    /// carries credentials that are not a valid bearer token.
    pub fn viewer(self, req: &Request) -> Result<Option<String>, Problem> {
        match self {
            Self::Bearer(BearerAuth(user)) => Ok(Some(user.id)),
            Self::Anonymous => match req.headers().get(AUTHORIZATION) {
                None => Ok(None),
                // The token was refused (poem-openapi fell back to anonymous without saying
                // why): check it again, on this failure path only, to name the defect.
                Some(value) => {
                    let token = value
                        .to_str()
                        .ok()
                        .and_then(|v| v.split_once(' '))
                        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                        .map(|(_, token)| token)
                        .ok_or(AuthError::NotBearer);
                    let err = match token {
                        Ok(token) => match keys(req)
                            .map_err(|_| Problem::internal())?
                            .verify(token.trim())
                        {
                            Ok(_) => AuthError::Malformed,
                            Err(err) => err,
                        },
                        Err(err) => err,
                    };
                    Err(Problem::unauthorized(err.to_string()))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(matches!(keys.verify(&token), Err(AuthError::BadSubject)));
    }
}
