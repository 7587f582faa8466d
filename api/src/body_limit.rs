//! Caps request bodies. poem's `SizeLimit` refuses every request without `Content-Length`
//! (411 even for a GET), so this cap reads a chunked body through a limit instead.

use poem::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::problem::Problem;

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
    match declared {
        Some(length) if length > max as u64 => return Err(too_large(max)),
        Some(_) => {}
        None if req.headers().contains_key(TRANSFER_ENCODING) => {
            let body = req
                .take_body()
                .into_bytes_limit(max)
                .await
                .map_err(|err| match err {
                    poem::error::ReadBodyError::PayloadTooLarge => too_large(max),
                    other => {
                        Problem::bad_request(format!("could not read the body: {other}")).into()
                    }
                })?;
            req.set_body(body);
        }
        None => {}
    }
    next.call(req).await.map(IntoResponse::into_response)
}
