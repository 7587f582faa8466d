//! Bearer-token authentication: verifying the JWTs on requests, and minting dev tokens.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// The longest user id tally stores; `sub` claims beyond it are refused.
pub const MAX_USER_ID_LEN: usize = 128;

/// The claims tally reads. `sub` is the user id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// Why a bearer token was refused. Shown to the client: it names the defect, never the key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the bearer token is invalid: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("the token's sub claim must be 1 to {MAX_USER_ID_LEN} characters")]
    BadSubject,
}

/// The keys tokens are checked (and, in development, signed) with.
#[derive(Clone)]
pub struct TokenKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys { .. }")
    }
}

impl TokenKeys {
    /// HS256 keys from a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks signature, algorithm and expiry, and returns the caller's user id.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(AuthError::Invalid)?;
        let sub = data.claims.sub;
        if sub.is_empty() || sub.chars().count() > MAX_USER_ID_LEN {
            return Err(AuthError::BadSubject);
        }
        Ok(sub)
    }

    /// Signs a token for `user_id` valid for `ttl`.
    pub fn issue(
        &self,
        user_id: &str,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
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

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<User> {
    let Some(keys) = req.data::<Arc<TokenKeys>>() else {
        tracing::error!("token keys are missing from the request data");
        return Err(Problem::internal().into());
    };
    keys.verify(&bearer.token)
        .map(|id| User { id })
        .map_err(|err| Problem::unauthorized(err.to_string()).into())
}
