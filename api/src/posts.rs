//! `/v1/posts`: creating, reading (one, or a feed's worth with their counts) and deleting
//! posts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use tracing::instrument;
use uuid::Uuid;

use crate::auth::{BearerAuth, ReaderAuth};
use crate::counts_cache::CountsCache;
use crate::examples;
use crate::http_cache::{self, Audience, VARY};
use crate::json_bytes::JsonBytes;
use crate::problem::{Problem, ServiceError, WriteError, reject};
use crate::rejected_by_status;
use crate::store::{CreatePost, DeletePost, EventContext, PostRow, Store, StoreError};
use crate::tags::ApiTags;
use crate::write_limit::WriteLimiter;

/// A post with its counts.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Post {
    /// The post's id.
    pub id: Uuid,
    /// The user who created the post.
    pub author_id: String,
    /// When the post was created.
    pub created_at: DateTime<Utc>,
    /// How many users like the post. Eventually consistent: it trails writes by the
    /// pipeline's lag (well under a second when healthy).
    pub likes: i64,
    /// How many live comments the post has. Eventually consistent, like `likes`.
    pub comments: i64,
    /// Whether the caller likes the post; only on reads with a bearer token. Read from the
    /// likes themselves, so it is exact at once, ahead of `likes`.
    #[oai(skip_serializing_if_is_none)]
    pub liked_by_me: Option<bool>,
    /// On write responses, the id of the event this request produced; null when nothing
    /// changed, and on reads.
    pub event_id: Option<Uuid>,
    /// Only when the read asked for `after_event`: whether the counts include that event
    /// (false: it was not counted within the wait, so the counts may trail it).
    #[oai(skip_serializing_if_is_none)]
    pub after_event_applied: Option<bool>,
}

impl Post {
    fn from_row(row: PostRow, event_id: Option<Uuid>) -> Self {
        Self {
            id: row.post_id,
            author_id: row.author_id,
            created_at: row.created_at,
            likes: row.likes,
            comments: row.comments,
            liked_by_me: None,
            event_id,
            after_event_applied: None,
        }
    }

    /// A post as a reader sees it: `liked_by_me` set for a signed-in reader.
    fn read(row: PostRow, liked: Option<&HashSet<Uuid>>) -> Self {
        let id = row.post_id;
        Self {
            liked_by_me: liked.map(|liked| liked.contains(&id)),
            ..Self::from_row(row, None)
        }
    }
}

impl Example for Post {
    fn example() -> Self {
        Self {
            id: examples::post_id(),
            author_id: examples::AUTHOR.into(),
            created_at: examples::time(),
            likes: 42,
            comments: 7,
            liked_by_me: Some(true),
            event_id: None,
            after_event_applied: None,
        }
    }
}

/// The body of `POST /v1/posts`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct NewPost {
    /// The post's id, chosen by the caller so retries are idempotent; a new UUIDv7 when
    /// omitted.
    pub id: Option<Uuid>,
}

impl Example for NewPost {
    fn example() -> Self {
        Self {
            id: Some(examples::post_id()),
        }
    }
}

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

/// Posts read by id, for a feed.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Feed {
    /// The posts found, in the order their ids were asked for (each once).
    pub posts: Vec<Post>,
    /// The ids asked for that name no post (never created, or deleted).
    pub missing: Vec<Uuid>,
    /// Only when the read asked for `after_event`: whether the counts include that event.
    #[oai(skip_serializing_if_is_none)]
    pub after_event_applied: Option<bool>,
}

impl Example for Feed {
    fn example() -> Self {
        Self {
            posts: vec![Post::example()],
            missing: vec![examples::other_post_id()],
            after_event_applied: None,
        }
    }
}

/// The most ids one feed read may ask for.
pub const MAX_FEED_IDS: usize = 100;

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

/// Posts and their counts.
#[derive(Debug)]
pub struct PostsApi;

#[OpenApi(tag = "ApiTags::Posts")]
impl PostsApi {
    /// Create a post
    ///
    /// Registers a likeable post owned by the caller. Creating the same post again is
    /// idempotent (200); an id owned by someone else, or of a post the caller deleted, is a
    /// 409.
    #[oai(path = "/v1/posts", method = "post", operation_id = "createPost")]
    #[instrument(skip_all, fields(user = %auth.0.id))]
    async fn create_post(
        &self,
        store: Data<&Store>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        body: Json<NewPost>,
    ) -> Result<CreatePostResponse, WriteError> {
        limiter.check(&auth.0.id)?;
        let post_id = body.0.id.unwrap_or_else(Uuid::now_v7);
        let ctx = EventContext::from_traceparent(traceparent.0);
        Ok(match store.create_post(post_id, &auth.0.id, &ctx).await? {
            CreatePost::Created { post, event_id } => {
                CreatePostResponse::Created(Json(Post::from_row(post, Some(event_id))))
            }
            CreatePost::Exists(post) => {
                CreatePostResponse::AlreadyExists(Json(Post::from_row(post, None)))
            }
            CreatePost::Taken => CreatePostResponse::Conflict(Json(Problem::conflict(format!(
                "post {post_id} belongs to another author"
            )))),
            CreatePost::Deleted => CreatePostResponse::Conflict(Json(Problem::conflict(format!(
                "post {post_id} is yours but you deleted it; a deleted post's id cannot be used again"
            )))),
        })
    }

    /// Read posts by id (a feed)
    ///
    /// The posts named by `ids` (1 to 100, comma-separated: `ids=a,b,c`) with their counts,
    /// in the order asked; ids that name no post are listed in `missing`. Counts come from
    /// a cache refreshed at most every `TALLY_COUNTS_CACHE_TTL_MS` (1 s by default). With a
    /// bearer token, each post says whether the caller likes it.
    #[oai(path = "/v1/posts", method = "get", operation_id = "getPosts")]
    #[instrument(skip_all, fields(ids = ids.0.len()))]
    #[allow(clippy::too_many_arguments)]
    async fn get_posts(
        &self,
        store: Data<&Store>,
        cache: Data<&CountsCache>,
        wait: Data<&ReadYourWrites>,
        auth: ReaderAuth,
        /// 1 to 100 post ids, comma-separated.
        #[oai(
            explode = false,
            validator(min_items = 1, max_items = 100),
            example = "examples::feed_ids"
        )]
        ids: Query<Vec<Uuid>>,
        /// Read-your-writes, as on `GET /v1/posts/{post_id}`: wait until the counts include
        /// this event (the cache is bypassed for such a read).
        #[oai(example = "examples::after_event")]
        after_event: Query<Option<Uuid>>,
        /// An `ETag` from an earlier answer: a 304 without a body when it is still current.
        #[oai(name = "If-None-Match", example = "examples::if_none_match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<GetPostsResponse, ServiceError> {
        let viewer = auth.viewer();
        let mut asked = Vec::with_capacity(ids.0.len());
        for id in ids.0 {
            if !asked.contains(&id) {
                asked.push(id);
            }
        }
        let liked = async {
            match &viewer {
                Some(user) => store.liked_by(user, &asked).await.map(Some),
                None => Ok(None),
            }
        };
        let posts = async {
            match after_event.0 {
                Some(event_id) => {
                    let applied = wait.until_applied(&store, event_id).await?;
                    let mut found: HashMap<Uuid, Option<PostRow>> =
                        asked.iter().map(|id| (*id, None)).collect();
                    for post in store.get_posts(&asked).await? {
                        found.insert(post.post_id, Some(post));
                    }
                    Ok::<_, StoreError>((found, Some(applied)))
                }
                None => Ok((cache.posts(&store, &asked).await?, None)),
            }
        };
        let ((mut found, applied), liked) = tokio::try_join!(posts, liked)?;
        let mut feed = Feed {
            posts: Vec::with_capacity(asked.len()),
            missing: Vec::new(),
            after_event_applied: applied,
        };
        for id in asked {
            match found.remove(&id).flatten() {
                Some(post) => feed.posts.push(Post::read(post, liked.as_ref())),
                None => feed.missing.push(id),
            }
        }
        let audience = Audience::of(viewer.is_some(), after_event.0.is_some());
        Ok(
            match Conditional::of(JsonBytes::new(&feed), audience, if_none_match.0) {
                Conditional::Fresh(body, tag, control) => {
                    GetPostsResponse::Ok(body, tag, control, VARY.into())
                }
                Conditional::NotModified(tag, control) => {
                    GetPostsResponse::NotModified(tag, control, VARY.into())
                }
            },
        )
    }

    /// Get a post
    ///
    /// The post with its like and comment counts and, with a bearer token, whether the
    /// caller likes it.
    #[oai(path = "/v1/posts/:post_id", method = "get", operation_id = "getPost")]
    #[instrument(skip_all, fields(post_id = %post_id.0))]
    async fn get_post(
        &self,
        store: Data<&Store>,
        wait: Data<&ReadYourWrites>,
        auth: ReaderAuth,
        /// The post's id.
        #[oai(example = "examples::post_id")]
        post_id: Path<Uuid>,
        /// Read-your-writes: the `event_id` of the caller's own write. The read waits (at
        /// most `TALLY_READ_YOUR_WRITES_TIMEOUT_MS`, 2 s by default) until the counts include
        /// that event, and says in `after_event_applied` whether they do.
        #[oai(example = "examples::after_event")]
        after_event: Query<Option<Uuid>>,
        /// An `ETag` from an earlier answer: a 304 without a body when it is still current.
        #[oai(name = "If-None-Match", example = "examples::if_none_match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<GetPostResponse, ServiceError> {
        let viewer = auth.viewer();
        let audience = Audience::of(viewer.is_some(), after_event.0.is_some());
        let applied = match after_event.0 {
            Some(event_id) => Some(wait.until_applied(&store, event_id).await?),
            None => None,
        };
        Ok(
            match store.get_post_for(post_id.0, viewer.as_deref()).await? {
                Some((post, liked_by_me)) => {
                    let post = Post {
                        liked_by_me,
                        after_event_applied: applied,
                        ..Post::from_row(post, None)
                    };
                    match Conditional::of(JsonBytes::new(&post), audience, if_none_match.0) {
                        Conditional::Fresh(body, tag, control) => {
                            GetPostResponse::Ok(body, tag, control, VARY.into())
                        }
                        Conditional::NotModified(tag, control) => {
                            GetPostResponse::NotModified(tag, control, VARY.into())
                        }
                    }
                }
                None => GetPostResponse::NotFound(Json(Problem::not_found(format!(
                    "post {} does not exist",
                    post_id.0
                )))),
            },
        )
    }

    /// Delete a post
    ///
    /// Only the post's author may delete it. Afterwards the post reads as 404, and liking,
    /// unliking or commenting on it is a 404; its likes and comments are kept, so counts
    /// stay exact. Deleting it again is a 204 that changes nothing.
    #[oai(
        path = "/v1/posts/:post_id",
        method = "delete",
        operation_id = "deletePost"
    )]
    #[instrument(skip_all, fields(user = %auth.0.id, post_id = %post_id.0))]
    async fn delete_post(
        &self,
        store: Data<&Store>,
        cache: Data<&CountsCache>,
        limiter: Data<&WriteLimiter>,
        auth: BearerAuth,
        /// W3C trace context; carried onto the event this write produces.
        #[oai(name = "traceparent", example = "examples::traceparent")]
        traceparent: Header<Option<String>>,
        /// The post to delete.
        #[oai(example = "examples::post_id")]
        post_id: Path<Uuid>,
    ) -> Result<DeletePostResponse, WriteError> {
        limiter.check(&auth.0.id)?;
        let ctx = EventContext::from_traceparent(traceparent.0);
        let post_id = post_id.0;
        Ok(match store.delete_post(post_id, &auth.0.id, &ctx).await? {
            DeletePost::Deleted { event_id } => {
                // This instance's feed reads drop it at once; others within their TTL.
                cache.forget(post_id).await;
                DeletePostResponse::Deleted(Some(event_id.to_string()))
            }
            DeletePost::AlreadyDeleted => DeletePostResponse::Deleted(None),
            DeletePost::NotAuthor => DeletePostResponse::Forbidden(Json(Problem::forbidden(
                format!("post {post_id} is someone else's: only its author may delete it"),
            ))),
            DeletePost::NotFound => DeletePostResponse::NotFound(Json(Problem::not_found(
                format!("post {post_id} does not exist"),
            ))),
        })
    }
}

/// A read's answer after `If-None-Match`: the body with its `ETag` and `Cache-Control`, or
/// just those two when the caller's copy is current.
enum Conditional<T> {
    Fresh(JsonBytes<T>, String, String),
    NotModified(String, String),
}

impl<T> Conditional<T> {
    fn of(body: JsonBytes<T>, audience: Audience, if_none_match: Option<String>) -> Self {
        let tag = http_cache::etag(body.bytes());
        let control = audience.cache_control();
        if http_cache::none_match(if_none_match.as_deref(), &tag) {
            Self::NotModified(tag, control)
        } else {
            Self::Fresh(body, tag, control)
        }
    }
}

/// How long a read with `after_event` may wait for the updater.
#[derive(Debug, Clone, Copy)]
pub struct ReadYourWrites {
    pub timeout: Duration,
}

/// How often a waiting read looks for its event: short against the pipeline's lag (tens
/// of milliseconds), long enough to cost Postgres little.
const POLL: Duration = Duration::from_millis(10);

impl ReadYourWrites {
    /// Waits until the updater counted `event_id` or the timeout passes; whether it was.
    async fn until_applied(&self, store: &Store, event_id: Uuid) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if store.event_applied(event_id).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
