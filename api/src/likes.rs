//! `/v1/likes`: liking and unliking posts. Each state change writes one outbox event; a
//! repeated like or unlike changes nothing and writes nothing.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use tracing::instrument;
use uuid::Uuid;

use crate::auth::{BearerAuth, ReaderAuth};
use crate::cursor::{Cursor, PageRequest};
use crate::examples;
use crate::liked_cache::LikedCache;
use crate::problem::{Problem, RequestRejected, ServiceError, WriteError, reject};
use crate::rejected_by_status;
use crate::store::{AddLike, EventContext, RemoveLike, Store, ToggleLike};
use crate::strict_string::StrictString;
use crate::tags::ApiTags;
use crate::text_rules;
use crate::write_limit::WriteLimiter;

/// One user's like of one post.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Like {
    /// The liked post.
    pub post_id: Uuid,
    /// The user who likes it.
    pub user_id: String,
    /// When the like was first made.
    pub created_at: DateTime<Utc>,
    /// The id of the event this request produced; null when the post was already liked.
    pub event_id: Option<Uuid>,
}

impl Example for Like {
    fn example() -> Self {
        Self {
            post_id: examples::post_id(),
            user_id: examples::READER.into(),
            created_at: examples::time(),
            event_id: Some(examples::event_id()),
        }
    }
}

/// The body of `POST /v1/likes`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct NewLike {
    /// The post to like.
    pub post_id: Uuid,
    /// Optional; when given it must be the caller (the token's `sub`).
    #[oai(validator(min_length = 1, max_length = 128))]
    pub user_id: Option<StrictString>,
}

impl Example for NewLike {
    fn example() -> Self {
        Self {
            post_id: examples::post_id(),
            user_id: None,
        }
    }
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum LikeResponse {
    /// The like was recorded and its event written.
    #[oai(status = 201)]
    Created(Json<Like>),
    /// The caller already liked the post; nothing changed.
    #[oai(status = 200)]
    AlreadyLiked(Json<Like>),
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
    /// `user_id` is not the caller.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such post, or it was deleted.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The body is larger than the api accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
}

rejected_by_status!(LikeResponse {
    413 => PayloadTooLarge, 415 => UnsupportedMediaType,
} else BadRequest);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum UnlikeResponse {
    /// The caller no longer likes the post (whether or not they did before).
    /// `Tally-Event-Id` names the event produced, and is absent when nothing changed.
    #[oai(status = 204)]
    Unliked(#[oai(header = "Tally-Event-Id")] Option<String>),
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
    /// No such post. (A like on a deleted post can still be taken back.)
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

rejected_by_status!(UnlikeResponse {} else BadRequest);

/// A like's state after a toggle.
#[derive(Debug, Object)]
#[oai(example)]
pub struct LikeToggle {
    /// The post.
    pub post_id: Uuid,
    /// Whether the caller likes the post now.
    pub liked: bool,
    /// The id of the event this toggle produced (every toggle changes the like).
    pub event_id: Uuid,
}

impl Example for LikeToggle {
    fn example() -> Self {
        Self {
            post_id: examples::post_id(),
            liked: true,
            event_id: examples::event_id(),
        }
    }
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum ToggleResponse {
    /// The like was flipped; `liked` says which way.
    #[oai(status = 200)]
    Toggled(Json<LikeToggle>),
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
    /// No such post, or it was deleted and the caller does not like it (a like on a deleted
    /// post can be turned off, never on).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

rejected_by_status!(ToggleResponse {} else BadRequest);

/// A user who likes a post.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Liker {
    /// The user.
    pub user_id: String,
    /// When they liked the post.
    pub created_at: DateTime<Utc>,
}

impl Example for Liker {
    fn example() -> Self {
        Self {
            user_id: examples::READER.into(),
            created_at: examples::time(),
        }
    }
}

/// One page of a post's likers, newest first.
#[derive(Debug, Object)]
#[oai(example)]
pub struct LikersPage {
    /// At most `limit` likers, newest like first.
    pub items: Vec<Liker>,
    /// Pass as `cursor` for the next page; null on the last page. Likes made while paging
    /// never shift the pages: every user who liked the post before the first page is listed
    /// exactly once (unless they unlike, or unlike and like again, meanwhile).
    pub next_cursor: Option<String>,
}

impl Example for LikersPage {
    fn example() -> Self {
        Self {
            items: vec![Liker::example()],
            next_cursor: None,
        }
    }
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "reject")]
pub enum LikersResponse {
    /// A page of likers.
    #[oai(status = 200)]
    Ok(Json<LikersPage>),
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

rejected_by_status!(LikersResponse {} else BadRequest);

fn post_not_found(post_id: Uuid) -> Json<Problem> {
    Json(Problem::not_found(format!("post {post_id} does not exist")))
}

/// Likes.
#[derive(Debug)]
pub struct LikesApi;

#[OpenApi(tag = "ApiTags::Likes")]
impl LikesApi {
    /// Like a post
    ///
    /// The caller likes the post. Liking twice is idempotent: one like, one event.
    #[oai(path = "/v1/likes", method = "post", operation_id = "likePost")]
    #[instrument(skip_all, fields(user = %auth.0.id, post_id = %body.0.post_id))]
    async fn like(
        &self,
        store: Data<&Store>,
        liked: Data<&LikedCache>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        body: Json<NewLike>,
    ) -> Result<LikeResponse, WriteError> {
        let NewLike { post_id, user_id } = body.0;
        let caller = auth.0.id;
        // The caller's id is in NFC (see text_rules); so is the id they name, to compare.
        if user_id.is_some_and(|StrictString(id)| text_rules::to_nfc(&id) != caller) {
            return Ok(LikeResponse::Forbidden(Json(Problem::forbidden(
                "user_id must be the caller's own id (the token's sub)",
            ))));
        }
        limiter.check(&caller)?;
        let ctx = EventContext::from_traceparent(traceparent.0);
        let like = |created_at, event_id| {
            Json(Like {
                post_id,
                user_id: caller.clone(),
                created_at,
                event_id,
            })
        };
        liked.writing(&caller, post_id);
        Ok(match store.add_like(post_id, &caller, &ctx).await? {
            AddLike::Added {
                created_at,
                event_id,
            } => {
                liked.wrote(&caller, post_id, true);
                LikeResponse::Created(like(created_at, Some(event_id)))
            }
            AddLike::AlreadyLiked { created_at } => {
                liked.wrote(&caller, post_id, true);
                LikeResponse::AlreadyLiked(like(created_at, None))
            }
            AddLike::PostNotFound => LikeResponse::NotFound(post_not_found(post_id)),
        })
    }

    /// Unlike a post
    ///
    /// The caller stops liking the post. Idempotent: unliking a post you do not like is a
    /// 204 that changes nothing.
    #[oai(
        path = "/v1/likes/:post_id",
        method = "delete",
        operation_id = "unlikePost"
    )]
    #[instrument(skip_all, fields(user = %auth.0.id, post_id = %post_id.0))]
    async fn unlike(
        &self,
        store: Data<&Store>,
        liked: Data<&LikedCache>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        /// The post to unlike.
        #[oai(example = "examples::post_id")]
        post_id: Path<Uuid>,
    ) -> Result<UnlikeResponse, WriteError> {
        limiter.check(&auth.0.id)?;
        let ctx = EventContext::from_traceparent(traceparent.0);
        liked.writing(&auth.0.id, post_id.0);
        Ok(
            match store.remove_like(post_id.0, &auth.0.id, &ctx).await? {
                RemoveLike::Removed { event_id } => {
                    liked.wrote(&auth.0.id, post_id.0, false);
                    UnlikeResponse::Unliked(Some(event_id.to_string()))
                }
                RemoveLike::NotLiked => {
                    liked.wrote(&auth.0.id, post_id.0, false);
                    UnlikeResponse::Unliked(None)
                }
                RemoveLike::PostNotFound => UnlikeResponse::NotFound(post_not_found(post_id.0)),
            },
        )
    }

    /// Toggle a like
    ///
    /// Likes the post when the caller does not, unlikes it when they do (the toggle of a
    /// like button), and answers which way it went. Each toggle writes one event.
    #[oai(
        path = "/v1/likes/:post_id/toggle",
        method = "post",
        operation_id = "toggleLike"
    )]
    #[instrument(skip_all, fields(user = %auth.0.id, post_id = %post_id.0))]
    async fn toggle(
        &self,
        store: Data<&Store>,
        liked_cache: Data<&LikedCache>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        /// The post whose like to flip.
        #[oai(example = "examples::post_id")]
        post_id: Path<Uuid>,
    ) -> Result<ToggleResponse, WriteError> {
        limiter.check(&auth.0.id)?;
        let ctx = EventContext::from_traceparent(traceparent.0);
        liked_cache.writing(&auth.0.id, post_id.0);
        Ok(
            match store.toggle_like(post_id.0, &auth.0.id, &ctx).await? {
                ToggleLike::Toggled { liked, event_id } => {
                    liked_cache.wrote(&auth.0.id, post_id.0, liked);
                    ToggleResponse::Toggled(Json(LikeToggle {
                        post_id: post_id.0,
                        liked,
                        event_id,
                    }))
                }
                ToggleLike::PostNotFound => ToggleResponse::NotFound(post_not_found(post_id.0)),
            },
        )
    }

    /// List who liked a post
    ///
    /// The users who like the post, newest like first, `limit` at a time (20 by default,
    /// at most 100). Pass a page's `next_cursor` as `cursor` for the next page.
    #[oai(
        path = "/v1/posts/:post_id/likes",
        method = "get",
        operation_id = "listLikers"
    )]
    #[instrument(skip_all, fields(post_id = %post_id.0))]
    async fn likers(
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
            validator(
                pattern = r"^bDEu(?:[A-Za-z0-9_-]{4}){3,173}(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$",
                min_length = 16,
                max_length = 699
            ),
            example = "examples::likers_cursor"
        )]
        cursor: Query<Option<String>>,
    ) -> Result<LikersResponse, ServiceError> {
        let page = match PageRequest::<String>::new(limit.0, cursor.0.as_deref()) {
            Ok(page) => page,
            Err(bad) => return Ok(LikersResponse::rejected(bad.into())),
        };
        let after = page.after.as_ref().map(|c| (c.created_at, c.key.as_str()));
        let Some(likers) = store.likers(post_id.0, after, page.fetch()).await? else {
            return Ok(LikersResponse::NotFound(post_not_found(post_id.0)));
        };
        let (likers, next_cursor) = page.finish(likers, |liker| Cursor {
            created_at: liker.created_at,
            key: liker.user_id.clone(),
        });
        Ok(LikersResponse::Ok(Json(LikersPage {
            items: likers
                .into_iter()
                .map(|liker| Liker {
                    user_id: liker.user_id,
                    created_at: liker.created_at,
                })
                .collect(),
            next_cursor,
        })))
    }
}
