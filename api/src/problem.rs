//! RFC 9457 problem details: the one body shape of every non-2xx answer.

use poem::http::StatusCode;
use poem_openapi::Object;
use poem_openapi::payload::Json;

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
    /// A short, stable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code of this answer.
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    pub fn too_many_requests(retry_after_secs: u32) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
            format!("this user is writing too fast; retry in {retry_after_secs} s"),
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "the database is unreachable; retry after the given delay",
        )
    }

    pub fn contended() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "contended",
            "Service unavailable",
            "the same like changed under this request again and again; retry after the given delay",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed to handle this request; it has been logged",
        )
    }

    /// The problem for an error poem or poem-openapi raised before a handler ran (bad JSON,
    /// wrong content type, unknown route, oversized body, ...). Their messages describe the
    /// request, never the database, so they are safe to show; server errors are not.
    pub fn from_status(status: StatusCode, message: String) -> Self {
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
        let title = status.canonical_reason().unwrap_or("Error");
        Self::new(status, slug, title, message)
    }

    /// The problem for any error: ours as it is, poem's rendered from its status and text.
    pub fn from_error(err: &poem::Error) -> Self {
        if let Some(problem) = err.downcast_ref::<Problem>() {
            return problem.clone();
        }
        // poem-openapi names path parameters by position internally (`param0`); say what
        // was wrong without that name.
        if let Some(path_err) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
            return Self::bad_request(format!("invalid path parameter: {}", path_err.reason));
        }
        Self::from_status(err.status(), err.to_string())
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

/// Implements [`RequestRejected`] for an operation's response enum: each listed status goes
/// to its variant, any other to the fallback (the operation's 400).
#[macro_export]
macro_rules! rejected_by_status {
    ($response:ty { $($status:literal => $variant:ident),* $(,)? } else $fallback:ident) => {
        impl $crate::problem::RequestRejected for $response {
            fn rejected(problem: $crate::problem::Problem) -> Self {
                match problem.status {
                    $($status => Self::$variant(poem_openapi::payload::Json(problem)),)*
                    _ => Self::$fallback(poem_openapi::payload::Json(problem)),
                }
            }
        }
    };
}
