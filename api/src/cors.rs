//! CORS, so a page on another origin can read counts and, from the origins an operator lists,
//! write. `TALLY_CORS_ORIGINS` lists exact origins; `*` lets any origin read (GET, HEAD) but
//! never write: a write preflight from an origin only `*` covers gets no CORS headers, so the
//! browser never sends the write. poem's `Cors` cannot tell reads from writes per origin (and
//! answers a preflight from an unknown origin with plain text), hence this small middleware.
//!
//! Tokens travel in `Authorization`, never in cookies, so no origin gets credentials mode:
//! there is no ambient authority for another site to borrow.

use std::sync::Arc;

use poem::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use poem::http::{HeaderMap, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::problem::Problem;

/// The methods an exactly listed origin may use: every method the api serves.
const ALL_METHODS: &str = "GET, HEAD, POST, DELETE";
/// The methods `*` allows.
const READ_METHODS: &str = "GET, HEAD";
/// The request headers a page may send: the token, the JSON body's type, trace context, and
/// the `Last-Event-ID` a reconnecting `EventSource` sends to `GET /v1/live` (not
/// CORS-safelisted, so its reconnect is preflighted).
const ALLOW_HEADERS: &str = "authorization, content-type, traceparent, last-event-id";
/// The response headers a page may read besides the CORS-safelisted ones.
const EXPOSE_HEADERS: &str = "Tally-Event-Id, Retry-After, Location, WWW-Authenticate, ETag";
/// How long (seconds) a browser may cache a preflight answer: short enough that a changed
/// origin list takes effect soon, long enough that a page pays one preflight per operation.
pub const MAX_AGE_SECS: u32 = 600;
/// What a preflight answer varies by, for caches between the browser and the api.
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The origins allowed by `TALLY_CORS_ORIGINS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins {
    /// Origins that may read and write, exactly as browsers send them (`https://app.example`).
    pub exact: Vec<String>,
    /// Whether `*` was listed: any origin may read.
    pub any_for_reads: bool,
}

impl CorsOrigins {
    /// Parses the variable's value: comma-separated origins and `*`. An empty value lists
    /// nothing (no CORS, as when unset).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut origins = Self::default();
        if value.trim().is_empty() {
            return Ok(origins);
        }
        for entry in value.split(',').map(str::trim) {
            if entry == "*" {
                origins.any_for_reads = true;
                continue;
            }
            origins.exact.push(parse_origin(entry)?);
        }
        Ok(origins)
    }

    /// Whether any origin is allowed at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && !self.any_for_reads
    }

    /// What `origin` may do with `method`: the `Access-Control-Allow-Origin` value and the
    /// methods it may use; None when it gets no CORS headers.
    fn grant(&self, origin: &HeaderValue, method: &Method) -> Option<(HeaderValue, &'static str)> {
        if self.exact.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
            return Some((origin.clone(), ALL_METHODS));
        }
        let read = method == Method::GET || method == Method::HEAD;
        (self.any_for_reads && read).then(|| (HeaderValue::from_static("*"), READ_METHODS))
    }
}

/// One origin, refused unless written exactly as a browser sends it in `Origin` (else it could
/// never match): `https://app.example.com`, no path or trailing slash, no default port.
fn parse_origin(entry: &str) -> Result<String, String> {
    let example = "write origins like https://app.example.com, comma-separated, or *";
    if entry.is_empty() {
        return Err(format!("an entry is empty: {example}"));
    }
    let url = url::Url::parse(entry)
        .map_err(|err| format!("'{entry}' is not an origin ({err}): {example}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "'{entry}' is not an http or https origin: {example}"
        ));
    }
    let canonical = url.origin().ascii_serialization();
    if canonical != entry {
        return Err(format!(
            "'{entry}' is not an origin as browsers send it: write '{canonical}'"
        ));
    }
    Ok(canonical)
}

/// Answers preflights and adds CORS headers to the answers for allowed origins.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Arc<CorsOrigins>,
}

impl Cors {
    pub fn new(origins: CorsOrigins) -> Self {
        Self {
            origins: Arc::new(origins),
        }
    }
}

impl<E: Endpoint> Middleware<E> for Cors {
    type Output = CorsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        CorsEndpoint {
            inner,
            origins: self.origins.clone(),
        }
    }
}

/// [`Cors`] applied to an endpoint.
#[derive(Debug)]
pub struct CorsEndpoint<E> {
    inner: E,
    origins: Arc<CorsOrigins>,
}

impl<E: Endpoint> Endpoint for CorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if self.origins.is_empty() {
            return Ok(self.inner.call(req).await?.into_response());
        }
        let Some(origin) = req.headers().get(ORIGIN).cloned() else {
            // Vary on every answer, not only on cross-origin ones: a shared cache must not
            // serve a same-origin answer (without CORS headers) to a page on another origin.
            let mut response = self.inner.call(req).await?.into_response();
            response
                .headers_mut()
                .append(VARY, HeaderValue::from_static("Origin"));
            return Ok(response);
        };
        if req.method() == Method::OPTIONS
            && let Some(requested) = req.headers().get(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Ok(self.preflight(&origin, requested));
        }
        let grant = self.origins.grant(&origin, req.method());
        let mut response = self.inner.call(req).await?.into_response();
        let headers = response.headers_mut();
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some((allow_origin, _)) = grant {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        Ok(response)
    }
}

impl<E> CorsEndpoint<E> {
    /// 204 with what the origin may do, or a 403 problem without any CORS header (the
    /// browser then never sends the request).
    fn preflight(&self, origin: &HeaderValue, requested: &HeaderValue) -> Response {
        let method = Method::from_bytes(requested.as_bytes()).ok();
        let grant = method.and_then(|method| self.origins.grant(origin, &method));
        let Some((allow_origin, methods)) = grant else {
            let mut response = Problem::forbidden(format!(
                "cross-origin {} requests from {} are not allowed",
                String::from_utf8_lossy(requested.as_bytes()),
                String::from_utf8_lossy(origin.as_bytes()),
            ))
            .into_response();
            response
                .headers_mut()
                .insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
            return response;
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
        headers.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
        let mut response = Response::builder().status(StatusCode::NO_CONTENT).finish();
        response.headers_mut().extend(headers);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_only_as_browsers_send_them() {
        let parsed = CorsOrigins::parse(" https://app.example.com ,*, http://localhost:5173");
        assert_eq!(
            parsed,
            Ok(CorsOrigins {
                exact: vec![
                    "https://app.example.com".into(),
                    "http://localhost:5173".into()
                ],
                any_for_reads: true,
            })
        );
        assert_eq!(CorsOrigins::parse(""), Ok(CorsOrigins::default()));
        for bad in [
            "https://app.example.com/",
            "https://App.example.com",
            "https://app.example.com:443",
            "app.example.com",
            "ftp://files.example.com",
            "null",
            "https://a.example,,https://b.example",
        ] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_wildcard_grants_reads_and_never_writes() {
        let origins = CorsOrigins::parse("*, https://app.example").unwrap_or_default();
        let stranger = HeaderValue::from_static("https://evil.example");
        let listed = HeaderValue::from_static("https://app.example");
        assert!(origins.grant(&stranger, &Method::GET).is_some());
        assert!(origins.grant(&stranger, &Method::POST).is_none());
        assert!(origins.grant(&stranger, &Method::DELETE).is_none());
        assert_eq!(
            origins.grant(&listed, &Method::POST),
            Some((listed.clone(), ALL_METHODS))
        );
    }
}
