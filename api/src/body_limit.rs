//! Caps request bodies and reads them in before any handler runs, by the request's deadline.
//! poem's `SizeLimit` refuses every request without `Content-Length` (411 even for a GET), so
//! this cap reads the body through a limit instead; a body still arriving at the request's
//! [`ReadDeadline`] (`TALLY_HTTP_READ_TIMEOUT_SECS` after its first byte) is a 408.

use poem::http::header::{CONNECTION, CONTENT_LENGTH};
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::http_limits::ReadDeadline;
use crate::problem::Problem;

/// The 408 for a body not in by its deadline; the connection closes after it, since the rest
/// of the body may still be on its way.
fn too_slow(deadline: &ReadDeadline) -> Response {
    let mut response = Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        format!(
            "the request was not received in full within {} s of its start: send the whole \
             request at once",
            deadline.timeout.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large(max: usize) -> poem::Error {
    Problem::new(
        poem::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("request bodies are limited to {max} bytes"),
    )
    .into()
}

/// Answers 413 to a body larger than `max` bytes, declared or streamed.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub max: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max: self.max,
        }
    }
}

/// [`BodyLimit`] applied to an endpoint.
#[derive(Debug)]
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        cap_body(&self.inner, req, self.max).await
    }
}

async fn cap_body<E: Endpoint>(next: &E, mut req: Request, max: usize) -> poem::Result<Response> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(too_large(max));
    }
    let body = req.take_body().into_bytes_limit(max);
    let read = match req.extensions().get::<ReadDeadline>().copied() {
        Some(deadline) => match tokio::time::timeout_at(deadline.at, body).await {
            Ok(read) => read,
            Err(_) => return Ok(too_slow(&deadline)),
        },
        None => body.await,
    };
    let body = read.map_err(|err| match err {
        poem::error::ReadBodyError::PayloadTooLarge => too_large(max),
        // The reader's own text (hyper's chunk decoding, an I/O error) means nothing to a
        // client: say what went wrong in its terms, and log the rest.
        other => {
            tracing::debug!(error = %other, "reading a request body failed");
            poem::Error::from(Problem::bad_request(
                "the body could not be read: it ended early or its chunked encoding is \
                 malformed; send it again whole",
            ))
        }
    })?;
    req.set_body(body);
    next.call(req).await.map(IntoResponse::into_response)
}
