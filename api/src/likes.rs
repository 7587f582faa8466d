//! `/v1/likes`: liking and unliking posts. Each state change writes one outbox event; a
//! repeated like or unlike changes nothing and writes nothing.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use tracing::instrument;
use uuid::Uuid;

use crate::auth::BearerAuth;
use crate::problem::{Problem, RequestRejected, ServiceError, reject};
use crate::store::{AddLike, EventContext, RemoveLike, Store, ToggleLike};
use crate::tags::ApiTags;
use crate::trace::valid_traceparent;

/// One user's like of one post.
#[derive(Debug, Object)]
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

/// The body of `POST /v1/likes`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewLike {
    /// The post to like.
    pub post_id: Uuid,
    /// Optional; when given it must be the caller (the token's `sub`).
    #[oai(validator(min_length = 1, max_length = 128))]
    pub user_id: Option<String>,
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
    Unauthorized(Json<Problem>),
    /// `user_id` is not the caller.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such post, or it was deleted.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
}

impl RequestRejected for LikeResponse {
    fn rejected(problem: Problem) -> Self {
        match problem.status {
            401 => Self::Unauthorized(Json(problem)),
            415 => Self::UnsupportedMediaType(Json(problem)),
            _ => Self::BadRequest(Json(problem)),
        }
    }
}

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
    Unauthorized(Json<Problem>),
    /// No such post, or it was deleted.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

impl RequestRejected for UnlikeResponse {
    fn rejected(problem: Problem) -> Self {
        match problem.status {
            401 => Self::Unauthorized(Json(problem)),
            _ => Self::BadRequest(Json(problem)),
        }
    }
}

/// A like's state after a toggle.
#[derive(Debug, Object)]
pub struct LikeToggle {
    /// The post.
    pub post_id: Uuid,
    /// Whether the caller likes the post now.
    pub liked: bool,
    /// The id of the event this request produced (null when a concurrent request of the
    /// same caller had already made the change).
    pub event_id: Option<Uuid>,
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
    Unauthorized(Json<Problem>),
    /// No such post, or it was deleted.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

impl RequestRejected for ToggleResponse {
    fn rejected(problem: Problem) -> Self {
        match problem.status {
            401 => Self::Unauthorized(Json(problem)),
            _ => Self::BadRequest(Json(problem)),
        }
    }
}

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
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent")]
        traceparent: Header<Option<String>>,
        body: Json<NewLike>,
    ) -> Result<LikeResponse, ServiceError> {
        let NewLike { post_id, user_id } = body.0;
        let caller = auth.0.id;
        if user_id.as_ref().is_some_and(|id| *id != caller) {
            return Ok(LikeResponse::Forbidden(Json(Problem::forbidden(
                "user_id must be the caller's own id (the token's sub)",
            ))));
        }
        let ctx = EventContext {
            traceparent: valid_traceparent(traceparent.0),
        };
        let like = |created_at, event_id| {
            Json(Like {
                post_id,
                user_id: caller.clone(),
                created_at,
                event_id,
            })
        };
        Ok(match store.add_like(post_id, &caller, &ctx).await? {
            AddLike::Added {
                created_at,
                event_id,
            } => LikeResponse::Created(like(created_at, Some(event_id))),
            AddLike::AlreadyLiked { created_at } => {
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
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent")]
        traceparent: Header<Option<String>>,
        /// The post to unlike.
        post_id: Path<Uuid>,
    ) -> Result<UnlikeResponse, ServiceError> {
        let ctx = EventContext {
            traceparent: valid_traceparent(traceparent.0),
        };
        Ok(
            match store.remove_like(post_id.0, &auth.0.id, &ctx).await? {
                RemoveLike::Removed { event_id } => {
                    UnlikeResponse::Unliked(Some(event_id.to_string()))
                }
                RemoveLike::NotLiked => UnlikeResponse::Unliked(None),
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
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent")]
        traceparent: Header<Option<String>>,
        /// The post whose like to flip.
        post_id: Path<Uuid>,
    ) -> Result<ToggleResponse, ServiceError> {
        let ctx = EventContext {
            traceparent: valid_traceparent(traceparent.0),
        };
        Ok(
            match store.toggle_like(post_id.0, &auth.0.id, &ctx).await? {
                ToggleLike::Toggled { liked, event_id } => {
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
}
