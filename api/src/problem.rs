//! RFC 9457 problem details: the one body shape of every non-2xx answer.

use poem::http::StatusCode;
use poem_openapi::Object;
use poem_openapi::payload::Json;

use crate::rejections;
use crate::store::StoreError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem detail (RFC 9457). `type` is a stable identifier a client can switch on;
/// `title` is its short human summary; `detail` explains this occurrence.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Problem {
    /// A URI reference naming the kind of problem, e.g. `/problems/not-found`.
    #[oai(rename = "type")]
    pub problem_type: String,
    /// The HTTP reason phrase of the status, e.g. `Not Found`: one title per status.
    pub title: String,
    /// The HTTP status code of this answer.
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
    /// The `WWW-Authenticate` challenge a 401 carries (RFC 6750); a header, not in the body.
    #[oai(skip)]
    pub www_authenticate: Option<String>,
}

/// The title of every problem with `status`: its reason phrase (RFC 9110 §15), so a title
/// never varies for one status.
pub fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("/problems/{slug}"),
            title: title(status).to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            www_authenticate: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// A 401; its challenge is the bare `Bearer realm` until [`Self::with_challenge`].
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// This problem with `challenge` as its `WWW-Authenticate` header.
    pub fn with_challenge(self, challenge: String) -> Self {
        Self {
            www_authenticate: Some(challenge),
            ..self
        }
    }

    /// The `WWW-Authenticate` value of this problem as a 401.
    pub fn challenge(&self) -> String {
        self.www_authenticate
            .clone()
            .unwrap_or_else(|| crate::auth::BEARER_CHALLENGE.to_owned())
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn too_many_requests(retry_after_secs: u32) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            format!("this user is writing too fast; retry in {retry_after_secs} s"),
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is unreachable; retry after the given delay",
        )
    }

    pub fn contended() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "contended",
            "the same like changed under this request again and again; retry after the given delay",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request; it has been logged",
        )
    }

    /// The problem for an error poem or poem-openapi raised before a handler ran (bad JSON,
    /// wrong content type, unknown route, oversized body, ...), its detail said in the
    /// caller's terms by [`rejections::detail`]. Server errors say nothing of their cause.
    pub fn from_status(status: StatusCode, detail: String) -> Self {
        let slug = match status {
            StatusCode::BAD_REQUEST => "bad-request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
            s if s.is_server_error() => return Self::internal(),
            _ => "client-error",
        };
        Self::new(status, slug, detail)
    }

    /// The problem for any error: ours as it is, poem's rendered from its status and kind.
    pub fn from_error(err: &poem::Error) -> Self {
        if let Some(problem) = err.downcast_ref::<Problem>() {
            return problem.clone();
        }
        Self::from_status(err.status(), rejections::detail(err))
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Renders the problem as a complete response with the problem media type.
    pub fn into_response(self) -> poem::Response {
        let status = self.status_code();
        let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some("1");
        let body = serde_json::json!({
            "type": self.problem_type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        let mut response = poem::Response::builder()
            .status(status)
            .content_type(PROBLEM_JSON)
            .body(body.to_string());
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("Retry-After", poem::http::HeaderValue::from_static(seconds));
        }
        if status == StatusCode::UNAUTHORIZED
            && let Ok(challenge) = poem::http::HeaderValue::from_str(&self.challenge())
        {
            response
                .headers_mut()
                .insert(poem::http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Self::not_found("post 0193c3a4-7f1e-7cc0-8d3a-1a2b3c4d5e6f does not exist")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.title, self.detail)
    }
}

impl std::error::Error for Problem {}

impl poem::error::ResponseError for Problem {
    fn status(&self) -> StatusCode {
        self.status_code()
    }

    fn as_response(&self) -> poem::Response {
        self.clone().into_response()
    }
}

/// Turns every error that escapes the endpoints into a problem body, so no client ever sees
/// poem's plain-text errors.
pub async fn render_error(err: poem::Error) -> poem::Response {
    // An operation's declared error response (ServiceError) is already a complete problem
    // response with its headers (Retry-After): pass it through unchanged.
    if err.is_from_response() {
        return err.into_response();
    }
    if err.status().is_server_error() && err.downcast_ref::<Problem>().is_none() {
        tracing::error!(error = %err, "request failed");
    }
    Problem::from_error(&err).into_response()
}

/// The server-side failures any read can answer with, declared on every read.
#[derive(Debug, poem_openapi::ApiResponse)]
pub enum ServiceError {
    /// Postgres is unreachable: retry after the delay in `Retry-After` (seconds).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    /// A bug: the request was valid but the server failed. Logged with details.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

/// Seconds a client should wait before retrying while Postgres is unreachable.
const UNAVAILABLE_RETRY_SECS: u32 = 1;

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        if let StoreError::Contended(_) = err {
            tracing::warn!(error = %err, "write contended");
            return Self::Unavailable(Json(Problem::contended()), UNAVAILABLE_RETRY_SECS);
        }
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            return Self::Unavailable(Json(Problem::unavailable()), UNAVAILABLE_RETRY_SECS);
        }
        tracing::error!(error = %err, source = ?std::error::Error::source(&err), "database error");
        Self::Internal(Json(Problem::internal()))
    }
}

/// The failures any write can answer with besides its own: the caller's rate limit, and the
/// server-side ones of [`ServiceError`].
#[derive(Debug, poem_openapi::ApiResponse)]
pub enum WriteError {
    /// The caller wrote faster than `TALLY_WRITE_RATE_PER_SEC` (after a burst of
    /// `TALLY_WRITE_BURST`): retry after the delay in `Retry-After` (seconds).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u32),
    /// Postgres is unreachable: retry after the delay in `Retry-After` (seconds).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
    /// A bug: the request was valid but the server failed. Logged with details.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

impl From<ServiceError> for WriteError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Unavailable(problem, retry) => Self::Unavailable(problem, retry),
            ServiceError::Internal(problem) => Self::Internal(problem),
        }
    }
}

impl From<StoreError> for WriteError {
    fn from(err: StoreError) -> Self {
        ServiceError::from(err).into()
    }
}

impl From<crate::write_limit::RateLimited> for WriteError {
    fn from(limited: crate::write_limit::RateLimited) -> Self {
        Self::TooManyRequests(
            Json(Problem::too_many_requests(limited.retry_after_secs)),
            limited.retry_after_secs,
        )
    }
}

/// An operation's response enum that can report a request poem-openapi refused before the
/// handler ran (bad path, query or body; wrong content type; missing or invalid token).
pub trait RequestRejected: Sized {
    /// Picks the variant declared for this problem's status.
    fn rejected(problem: Problem) -> Self;
}

/// The `bad_request_handler` of every operation response: turns poem-openapi's extraction
/// errors into that operation's declared problem variants.
pub fn reject<R: RequestRejected>(err: poem::Error) -> R {
    R::rejected(Problem::from_error(&err))
}

/// Implements [`RequestRejected`] for an operation's response enum: a 401 goes to its
/// `Unauthorized(Json<Problem>, String)` variant with the problem's `WWW-Authenticate`
/// challenge (every operation has one), each listed status to its variant, any other to the
/// fallback (the operation's 400).
#[macro_export]
macro_rules! rejected_by_status {
    ($response:ty { $($status:literal => $variant:ident),* $(,)? } else $fallback:ident) => {
        impl $crate::problem::RequestRejected for $response {
            fn rejected(problem: $crate::problem::Problem) -> Self {
                match problem.status {
                    401 => {
                        let challenge = problem.challenge();
                        Self::Unauthorized(poem_openapi::payload::Json(problem), challenge)
                    }
                    $($status => Self::$variant(poem_openapi::payload::Json(problem)),)*
                    _ => Self::$fallback(poem_openapi::payload::Json(problem)),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_titled_with_the_reason_phrase_of_its_status() {
        let problems = [
            Problem::bad_request("x"),
            Problem::unauthorized("x"),
            Problem::forbidden("x"),
            Problem::not_found("x"),
            Problem::conflict("x"),
            Problem::too_many_requests(1),
            Problem::unavailable(),
            Problem::contended(),
            Problem::internal(),
            Problem::from_status(StatusCode::METHOD_NOT_ALLOWED, "x".into()),
            Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE, "x".into()),
            Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "x".into()),
        ];
        for problem in problems {
            assert_eq!(
                Some(problem.title.as_str()),
                problem.status_code().canonical_reason(),
                "{problem}"
            );
        }
    }

    #[test]
    fn a_401_carries_its_challenge_as_a_header_and_not_in_the_body() {
        let response = Problem::unauthorized("x")
            .with_challenge(r#"Bearer realm="tally", error="invalid_token""#.into())
            .into_response();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(r#"Bearer realm="tally", error="invalid_token""#)
        );
        let bare = Problem::unauthorized("x").into_response();
        assert_eq!(
            bare.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(crate::auth::BEARER_CHALLENGE)
        );
    }
}
