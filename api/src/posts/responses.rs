//! The answers of the `/v1/posts` operations, one enum per operation.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

use super::model::{Feed, Post};
use crate::json_bytes::JsonBytes;
use crate::problem::{Problem, reject};
use crate::rejected_by_status;

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum CreatePostResponse {
    /// The post was created.
    #[oai(status = 201)]
    Created(Json<Post>),
    /// The caller had already created this post; nothing changed.
    #[oai(status = 200)]
    AlreadyExists(Json<Post>),
    /// The request was malformed.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// A valid bearer token is required.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        /// `Bearer realm="tally"`, with `error="invalid_token"` and an `error_description`
        /// when a token was sent and refused (RFC 6750).
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The id belongs to another author's post, or to a post the caller deleted (a deleted
    /// post's id is never used again).
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than the api accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
}

rejected_by_status!(CreatePostResponse {
    413 => PayloadTooLarge, 415 => UnsupportedMediaType,
} else BadRequest);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum GetPostResponse {
    /// The post with its counts (gzip or br when `Accept-Encoding` allows).
    #[oai(status = 200)]
    Ok(
        JsonBytes<Post>,
        /// A strong validator of these exact bytes; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// How stale the counts may be: `public, max-age=1` for anonymous reads,
        /// `private, no-cache` with a bearer token (`liked_by_me` is the reader's own),
        /// `public, no-cache` for an anonymous `after_event` read.
        #[oai(header = "Cache-Control")]
        String,
        /// `Authorization, Accept-Encoding`.
        #[oai(header = "Vary")]
        String,
    ),
    /// `If-None-Match` names the current `ETag`: the cached copy is still right.
    #[oai(status = 304)]
    NotModified(
        /// A strong validator of these exact bytes; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// How stale the counts may be: `public, max-age=1` for anonymous reads,
        /// `private, no-cache` with a bearer token (`liked_by_me` is the reader's own),
        /// `public, no-cache` for an anonymous `after_event` read.
        #[oai(header = "Cache-Control")]
        String,
        /// `Authorization, Accept-Encoding`.
        #[oai(header = "Vary")]
        String,
    ),
    /// The post id or `after_event` is not a UUID.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request carries a bearer token that is not valid (reads need none).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        /// `Bearer realm="tally"`, with `error="invalid_token"` and an `error_description`
        /// when a token was sent and refused (RFC 6750).
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// No such post, or it was deleted.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

rejected_by_status!(GetPostResponse {} else BadRequest);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum GetPostsResponse {
    /// The posts found, and the ids that name none (gzip or br when `Accept-Encoding`
    /// allows).
    #[oai(status = 200)]
    Ok(
        JsonBytes<Feed>,
        /// A strong validator of these exact bytes; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// How stale the counts may be: `public, max-age=1` for anonymous reads,
        /// `private, no-cache` with a bearer token (`liked_by_me` is the reader's own),
        /// `public, no-cache` for an anonymous `after_event` read.
        #[oai(header = "Cache-Control")]
        String,
        /// `Authorization, Accept-Encoding`.
        #[oai(header = "Vary")]
        String,
    ),
    /// `If-None-Match` names the current `ETag`: the cached copy is still right.
    #[oai(status = 304)]
    NotModified(
        /// A strong validator of these exact bytes; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// How stale the counts may be: `public, max-age=1` for anonymous reads,
        /// `private, no-cache` with a bearer token (`liked_by_me` is the reader's own),
        /// `public, no-cache` for an anonymous `after_event` read.
        #[oai(header = "Cache-Control")]
        String,
        /// `Authorization, Accept-Encoding`.
        #[oai(header = "Vary")]
        String,
    ),
    /// `ids` is missing, empty, longer than 100 ids, or holds something other than UUIDs.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request carries a bearer token that is not valid (reads need none).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        /// `Bearer realm="tally"`, with `error="invalid_token"` and an `error_description`
        /// when a token was sent and refused (RFC 6750).
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
}

rejected_by_status!(GetPostsResponse {} else BadRequest);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum DeletePostResponse {
    /// The post is deleted (now, or before). `Tally-Event-Id` names the event produced,
    /// and is absent when nothing changed.
    #[oai(status = 204)]
    Deleted(#[oai(header = "Tally-Event-Id")] Option<String>),
    /// The post id is not a UUID.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// A valid bearer token is required.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        /// `Bearer realm="tally"`, with `error="invalid_token"` and an `error_description`
        /// when a token was sent and refused (RFC 6750).
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The post is someone else's: only its author may delete it.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such post (or someone else's deleted one).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

rejected_by_status!(DeletePostResponse {} else BadRequest);
