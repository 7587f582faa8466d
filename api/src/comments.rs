//! Comments: `POST` and `GET /v1/posts/{post_id}/comments`, `DELETE /v1/comments/{id}`.
//! Adding or removing a comment writes one event; the post's `comments` count follows.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use tracing::instrument;
use uuid::Uuid;

pub mod body;

use crate::auth::{BearerAuth, ReaderAuth};
use crate::cursor::{Cursor, PageRequest};
use crate::examples;
use crate::problem::{Problem, RequestRejected, ServiceError, WriteError, reject};
use crate::rejected_by_status;
use crate::store::{self, AddComment, EventContext, RemoveComment, Store};
use crate::tags::ApiTags;
use crate::write_limit::WriteLimiter;
use body::CommentBody;

/// The longest comment, in characters (Unicode code points, after NFC), as the database
/// enforces.
pub const MAX_COMMENT_CHARS: usize = body::MAX_CHARS;

/// A comment on a post.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Comment {
    /// The comment's id.
    pub id: Uuid,
    /// The post it is on.
    pub post_id: Uuid,
    /// The user who wrote it.
    pub author_id: String,
    /// What they wrote.
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// On write responses, the id of the event this request produced; null when nothing
    /// changed, and in lists.
    pub event_id: Option<Uuid>,
}

impl Comment {
    fn from_row(row: store::Comment, event_id: Option<Uuid>) -> Self {
        Self {
            id: row.comment_id,
            post_id: row.post_id,
            author_id: row.author_id,
            body: row.body,
            created_at: row.created_at,
            event_id,
        }
    }
}

impl Example for Comment {
    fn example() -> Self {
        Self {
            id: examples::comment_id(),
            post_id: examples::post_id(),
            author_id: examples::READER.into(),
            body: "Lovely photo!".into(),
            created_at: examples::time(),
            event_id: Some(examples::event_id()),
        }
    }
}

/// The body of `POST /v1/posts/{post_id}/comments`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct NewComment {
    /// The comment's id, chosen by the caller so retries are idempotent; a new UUIDv7 when
    /// omitted.
    pub id: Option<Uuid>,
    /// The text: 1 to 2000 characters, counted after Unicode NFC normalization (it is stored
    /// in NFC); not blank (only whitespace and invisible format characters such as U+200B);
    /// no control characters other than newline and tab.
    pub body: CommentBody,
}

impl Example for NewComment {
    fn example() -> Self {
        Self {
            id: None,
            body: CommentBody::from("Lovely photo!"),
        }
    }
}

/// One page of a post's comments, newest first.
#[derive(Debug, Object)]
#[oai(example)]
pub struct CommentsPage {
    /// At most `limit` comments, newest first.
    pub items: Vec<Comment>,
    /// Pass as `cursor` for the next page; null on the last page. Comments written while
    /// paging never shift the pages: every comment there before the first page is listed
    /// exactly once (unless deleted meanwhile).
    pub next_cursor: Option<String>,
}

impl Example for CommentsPage {
    fn example() -> Self {
        Self {
            items: vec![Comment {
                event_id: None,
                ..Comment::example()
            }],
            next_cursor: None,
        }
    }
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum AddCommentResponse {
    /// The comment was added and its event written.
    #[oai(status = 201)]
    Created(Json<Comment>),
    /// The caller had already added this comment (same id, post and body); nothing changed.
    #[oai(status = 200)]
    AlreadyExists(Json<Comment>),
    /// The request was malformed: e.g. an empty, blank or over-long body, or one with a
    /// control character.
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
    /// No such post, or it was deleted.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The id belongs to another comment.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than the api accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
}

rejected_by_status!(AddCommentResponse {
    413 => PayloadTooLarge, 415 => UnsupportedMediaType,
} else BadRequest);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum ListCommentsResponse {
    /// A page of comments.
    #[oai(status = 200)]
    Ok(Json<CommentsPage>),
    /// The post id is not a UUID, `limit` is not 1 to 100, or `cursor` is not one this
    /// list returned.
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

rejected_by_status!(ListCommentsResponse {} else BadRequest);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum DeleteCommentResponse {
    /// The comment is removed (now, or before). `Tally-Event-Id` names the event produced,
    /// and is absent when nothing changed.
    #[oai(status = 204)]
    Deleted(#[oai(header = "Tally-Event-Id")] Option<String>),
    /// The comment id is not a UUID.
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
    /// The caller wrote neither the comment nor the post it is on.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such comment. (A comment on a deleted post can still be deleted.)
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

rejected_by_status!(DeleteCommentResponse {} else BadRequest);

/// Comments on posts.
#[derive(Debug)]
pub struct CommentsApi;

#[OpenApi(tag = "ApiTags::Comments")]
impl CommentsApi {
    /// Comment on a post
    ///
    /// Adds the caller's comment to the post. Sending the same `id` again is idempotent
    /// (200); without an `id`, each request adds a comment.
    #[oai(
        path = "/v1/posts/:post_id/comments",
        method = "post",
        operation_id = "addComment"
    )]
    #[instrument(skip_all, fields(user = %auth.0.id, post_id = %post_id.0))]
    async fn add_comment(
        &self,
        store: Data<&Store>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        /// The post to comment on.
        #[oai(example = "examples::post_id")]
        post_id: Path<Uuid>,
        body: Json<NewComment>,
    ) -> Result<AddCommentResponse, WriteError> {
        let NewComment {
            id,
            body: CommentBody(body),
        } = body.0;
        // Checked before the rate limit, as the rest of the request body is.
        let body = match body::normalize(&body) {
            Ok(body) => body,
            Err(refused) => {
                return Ok(AddCommentResponse::BadRequest(Json(Problem::bad_request(
                    refused.to_string(),
                ))));
            }
        };
        limiter.check(&auth.0.id)?;
        let comment_id = id.unwrap_or_else(Uuid::now_v7);
        let ctx = EventContext::from_traceparent(traceparent.0);
        let post_id = post_id.0;
        Ok(
            match store
                .add_comment(post_id, comment_id, &auth.0.id, &body, &ctx)
                .await?
            {
                AddComment::Created { comment, event_id } => {
                    AddCommentResponse::Created(Json(Comment::from_row(comment, Some(event_id))))
                }
                AddComment::Exists(comment) => {
                    AddCommentResponse::AlreadyExists(Json(Comment::from_row(comment, None)))
                }
                AddComment::Taken => AddCommentResponse::Conflict(Json(Problem::conflict(
                    format!("comment {comment_id} is another comment"),
                ))),
                AddComment::PostNotFound => AddCommentResponse::NotFound(Json(Problem::not_found(
                    format!("post {post_id} does not exist"),
                ))),
            },
        )
    }

    /// List a post's comments
    ///
    /// The post's comments, newest first, `limit` at a time (20 by default, at most 100).
    /// Pass a page's `next_cursor` as `cursor` for the next page.
    #[oai(
        path = "/v1/posts/:post_id/comments",
        method = "get",
        operation_id = "listComments"
    )]
    #[instrument(skip_all, fields(post_id = %post_id.0))]
    async fn list_comments(
        &self,
        store: Data<&Store>,
        // The list is the same for everyone, but a token that is sent must be valid, as on
        // every read: a client learns its token expired here too.
        _auth: ReaderAuth,
        /// The post.
        #[oai(example = "examples::post_id")]
        post_id: Path<Uuid>,
        /// Page size, 1 to 100 (20 when omitted).
        #[oai(
            validator(minimum(value = "1"), maximum(value = "100")),
            example = "examples::limit"
        )]
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page; omit it for the first page. Opaque, but
        /// of an exact format: any string of it gets a page.
        #[oai(
            validator(pattern = r"^YzEu[A-Za-z0-9_-]{32}$", min_length = 36, max_length = 36),
            example = "examples::comments_cursor"
        )]
        cursor: Query<Option<String>>,
    ) -> Result<ListCommentsResponse, ServiceError> {
        let page = match PageRequest::<Uuid>::new(limit.0, cursor.0.as_deref()) {
            Ok(page) => page,
            Err(bad) => return Ok(ListCommentsResponse::rejected(bad.into())),
        };
        let after = page.after.as_ref().map(|c| (c.created_at, c.key));
        let Some(comments) = store.comments(post_id.0, after, page.fetch()).await? else {
            return Ok(ListCommentsResponse::NotFound(Json(Problem::not_found(
                format!("post {} does not exist", post_id.0),
            ))));
        };
        let (comments, next_cursor) = page.finish(comments, |comment| Cursor {
            created_at: comment.created_at,
            key: comment.comment_id,
        });
        Ok(ListCommentsResponse::Ok(Json(CommentsPage {
            items: comments
                .into_iter()
                .map(|comment| Comment::from_row(comment, None))
                .collect(),
            next_cursor,
        })))
    }

    /// Delete a comment
    ///
    /// Removes the comment; its author or the post's author may. Deleting it again is a 204
    /// that changes nothing.
    #[oai(
        path = "/v1/comments/:comment_id",
        method = "delete",
        operation_id = "deleteComment"
    )]
    #[instrument(skip_all, fields(user = %auth.0.id, comment_id = %comment_id.0))]
    async fn delete_comment(
        &self,
        store: Data<&Store>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        /// The comment to delete.
        #[oai(example = "examples::comment_id")]
        comment_id: Path<Uuid>,
    ) -> Result<DeleteCommentResponse, WriteError> {
        limiter.check(&auth.0.id)?;
        let ctx = EventContext::from_traceparent(traceparent.0);
        let comment_id = comment_id.0;
        Ok(
            match store.remove_comment(comment_id, &auth.0.id, &ctx).await? {
                RemoveComment::Removed { event_id } => {
                    DeleteCommentResponse::Deleted(Some(event_id.to_string()))
                }
                RemoveComment::AlreadyRemoved => DeleteCommentResponse::Deleted(None),
                RemoveComment::NotAllowed => {
                    DeleteCommentResponse::Forbidden(Json(Problem::forbidden(format!(
                        "only the author of comment {comment_id} or of its post may delete it"
                    ))))
                }
                RemoveComment::NotFound => DeleteCommentResponse::NotFound(Json(
                    Problem::not_found(format!("comment {comment_id} does not exist")),
                )),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_pattern_refuses_blank_and_nul_and_takes_the_rest() {
        let spec: serde_json::Value =
            serde_json::from_str(&crate::spec_json()).expect("the spec is JSON");
        let pattern = spec["components"]["schemas"]["NewComment"]["properties"]["body"]["pattern"]
            .as_str()
            .expect("the body's pattern is in the spec");
        let pattern = regex::Regex::new(pattern).expect("a valid pattern");
        for ok in ["a", " a ", "héllo\nworld", "👍", "\u{feff}x"] {
            assert!(pattern.is_match(ok), "{ok:?}");
        }
        for refused in ["", " ", "\n\t", "\u{a0}\u{3000}", "\x1c\x1f", "a\0", "\0"] {
            assert!(!pattern.is_match(refused), "{refused:?}");
        }
    }
}
