//! The HTTP side of authentication: reading a request's `Authorization` header (exactly one,
//! at most [`MAX_AUTHORIZATION_BYTES`], checked before any token is decoded), the extractors
//! operations declare ([`BearerAuth`] for writes, [`ReaderAuth`] for reads), and the
//! `WWW-Authenticate` challenge every refusal carries (RFC 6750 §3).
//!
//! These are written out rather than derived: poem-openapi's derived bearer scheme answers
//! every refusal with the same "authorization error", takes the first of two `Authorization`
//! headers, and falls back to an anonymous read without saying why a token was refused.

use std::sync::Arc;

use poem::http::header::AUTHORIZATION;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::{AuthError, MAX_AUTHORIZATION_BYTES, TokenKeys};
use crate::problem::Problem;

/// The challenge of a 401 to a request without bearer credentials: no error code, as RFC 6750
/// §3.1 asks when the client may not have known a token was needed.
pub const BEARER_CHALLENGE: &str = r#"Bearer realm="tally""#;

/// The security scheme's name in the spec.
const SCHEME: &str = "BearerAuth";

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
}

/// `Authorization: Bearer <JWT>`; the token's `sub` is the caller's user id.
#[derive(Debug)]
pub struct BearerAuth(pub User);

/// A read's caller: anyone, or a user with a valid bearer token. A request that carries an
/// `Authorization` header is refused when it is not a valid bearer token (a client learns its
/// token expired rather than silently reading as nobody).
#[derive(Debug)]
pub enum ReaderAuth {
    Bearer(BearerAuth),
    Anonymous,
}

impl ReaderAuth {
    /// The reading user's id; None for an anonymous read.
    pub fn viewer(self) -> Option<String> {
        match self {
            Self::Bearer(BearerAuth(user)) => Some(user.id),
            Self::Anonymous => None,
        }
    }
}

impl From<AuthError> for Problem {
    fn from(err: AuthError) -> Self {
        if let AuthError::Repeated(_) = err {
            // RFC 6750's invalid_request: a malformed request is a 400, not a 401.
            return Problem::bad_request(err.to_string());
        }
        let challenge = if err.is_missing_credentials() {
            BEARER_CHALLENGE.to_owned()
        } else {
            format!(
                r#"{BEARER_CHALLENGE}, error="invalid_token", error_description="{}""#,
                quotable(&err.to_string())
            )
        };
        Problem::unauthorized(err.to_string()).with_challenge(challenge)
    }
}

/// `text` within the characters RFC 6750 allows in `error_description` (visible ASCII and
/// space, without `"` and `\`).
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// The bearer token the request carries: None without an `Authorization` header; an error
/// when there are several, when it is too long, or when it is not `Bearer <token>`. Nothing
/// is decoded before the count and the length are checked.
fn bearer_token(req: &Request) -> Result<Option<&str>, AuthError> {
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let more = values.count();
    if more > 0 {
        return Err(AuthError::Repeated(1 + more));
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(AuthError::TooLong(value.len()));
    }
    let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        let is_scheme_name = (1..=32).contains(&scheme.len())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+".contains(&b));
        return Err(if is_scheme_name {
            AuthError::OtherScheme(scheme.to_owned())
        } else {
            AuthError::NotBearer
        });
    }
    match token.trim() {
        "" => Err(AuthError::EmptyToken),
        token => Ok(Some(token)),
    }
}

/// Verifies `token` with the api's keys.
fn authenticate(req: &Request, token: &str) -> poem::Result<User> {
    let keys = req.data::<Arc<TokenKeys>>().ok_or_else(|| {
        tracing::error!("token keys are missing from the request data");
        Problem::internal()
    })?;
    keys.verify(token)
        .map(|id| User { id })
        .map_err(|err| Problem::from(err).into())
}

fn register_scheme(registry: &mut Registry) {
    registry.create_security_scheme(
        SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some(
                "`Authorization: Bearer <JWT>`; the token's `sub` is the caller's user id.",
            ),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
}

impl<'a> ApiExtractor<'a> for BearerAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_scheme(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match bearer_token(req) {
            Ok(Some(token)) => Ok(Self(authenticate(req, token)?)),
            Ok(None) => Err(Problem::from(AuthError::Missing).into()),
            Err(err) => Err(Problem::from(err).into()),
        }
    }
}

impl<'a> ApiExtractor<'a> for ReaderAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_scheme(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match bearer_token(req) {
            Ok(Some(token)) => Ok(Self::Bearer(BearerAuth(authenticate(req, token)?))),
            Ok(None) => Ok(Self::Anonymous),
            Err(err) => Err(Problem::from(err).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(values: &[&str]) -> Request {
        let mut builder = Request::builder();
        for value in values {
            builder = builder.header(AUTHORIZATION, *value);
        }
        builder.finish()
    }

    #[test]
    fn the_header_is_read_once_bounded_and_by_scheme() {
        let token = |values: &[&str]| {
            bearer_token(&request(values))
                .map(|t| t.map(str::to_owned))
                .map_err(|err| err.to_string())
        };
        assert_eq!(token(&[]), Ok(None));
        assert_eq!(token(&["Bearer abc"]), Ok(Some("abc".into())));
        assert_eq!(token(&["bearer   abc "]), Ok(Some("abc".into())));
        assert!(matches!(
            bearer_token(&request(&["Bearer a", "Bearer b"])),
            Err(AuthError::Repeated(2))
        ));
        assert!(matches!(
            bearer_token(&request(&["Bearer "])),
            Err(AuthError::EmptyToken)
        ));
        assert!(matches!(
            bearer_token(&request(&["Bearer"])),
            Err(AuthError::EmptyToken)
        ));
        assert!(matches!(
            bearer_token(&request(&["Basic YWxpY2U6cHc="])),
            Err(AuthError::OtherScheme(s)) if s == "Basic"
        ));
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert!(matches!(
            bearer_token(&request(&[long.as_str()])),
            Err(AuthError::TooLong(n)) if n == MAX_AUTHORIZATION_BYTES + 7
        ));
    }

    #[test]
    fn challenges_name_an_error_only_for_a_bearer_token_that_was_refused() {
        let missing = Problem::from(AuthError::Missing);
        assert_eq!(missing.challenge(), BEARER_CHALLENGE);
        let basic = Problem::from(AuthError::OtherScheme("Basic".into()));
        assert_eq!(basic.challenge(), BEARER_CHALLENGE);
        let expired = Problem::from(AuthError::Expired);
        assert_eq!(
            expired.challenge(),
            r#"Bearer realm="tally", error="invalid_token", error_description="the bearer token has expired""#
        );
        assert_eq!(quotable("a \"b\" \\ é"), "a 'b' / ?");
        assert_eq!(Problem::from(AuthError::Repeated(2)).status, 400);
    }
}
