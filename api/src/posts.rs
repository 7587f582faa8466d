//! `/v1/posts`: creating, reading (one, or a feed's worth with their counts) and deleting
//! posts.

pub(crate) mod fragment;
mod model;
mod read_your_writes;
mod responses;

use std::collections::{HashMap, HashSet};

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use tracing::instrument;
use uuid::Uuid;

use crate::auth::{BearerAuth, ReaderAuth};
use crate::counts_cache::CountsCache;
use crate::examples;
use crate::http_cache::{self, Audience, VARY};
use crate::json_bytes::JsonBytes;
use crate::liked_cache::LikedCache;
use crate::problem::{Problem, ServiceError, WriteError};
use crate::store::{CreatePost, DeletePost, EventContext, PostRow, Store, StoreError};
use crate::tags::ApiTags;
use crate::write_limit::WriteLimiter;
pub use model::{Feed, MAX_FEED_IDS, NewPost, Post};
pub use read_your_writes::ReadYourWrites;
pub use responses::{CreatePostResponse, DeletePostResponse, GetPostResponse, GetPostsResponse};

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
        cache: Data<&CountsCache>,
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
                // A feed read here may have cached the id as unknown.
                cache.forget(post_id);
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
    /// a cache that the updater's count events keep current (they trail a write by the
    /// pipeline's lag) and that reads each post again from Postgres once it is older than
    /// `TALLY_COUNTS_CACHE_TTL_MS` (1 s by default). With a bearer token, each post says
    /// whether the caller likes it.
    #[oai(path = "/v1/posts", method = "get", operation_id = "getPosts")]
    #[instrument(skip_all, fields(ids = ids.0.len()))]
    #[allow(clippy::too_many_arguments)]
    async fn get_posts(
        &self,
        store: Data<&Store>,
        cache: Data<&CountsCache>,
        liked_cache: Data<&LikedCache>,
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
                // An exact read asks the likes themselves, like its counts.
                Some(user) if after_event.0.is_some() => {
                    store.liked_by(user, &asked).await.map(Some)
                }
                Some(user) => liked_cache.liked(&store, user, &asked).await.map(Some),
                None => Ok(None),
            }
        };
        let audience = Audience::of(viewer.is_some(), after_event.0.is_some());
        let body = match after_event.0 {
            Some(event_id) => {
                let exact = async {
                    let applied = wait.until_applied(&store, event_id).await?;
                    Ok::<_, StoreError>((store.get_posts(&asked).await?, applied))
                };
                let ((rows, applied), liked) = tokio::try_join!(exact, liked)?;
                JsonBytes::new(&exact_feed(&asked, rows, liked.as_ref(), applied))
            }
            None => {
                let (lookups, liked) = tokio::try_join!(cache.posts(&store, &asked), liked)?;
                let posts: Vec<_> = lookups
                    .iter()
                    .filter_map(|lookup| lookup.post())
                    .map(|post| {
                        let liked_by_me = liked
                            .as_ref()
                            .map(|liked| liked.contains(&post.row.post_id));
                        (&post.json, liked_by_me)
                    })
                    .collect();
                let missing: Vec<Uuid> = asked
                    .iter()
                    .zip(&lookups)
                    .filter(|(_, lookup)| lookup.post().is_none())
                    .map(|(id, _)| *id)
                    .collect();
                JsonBytes::from_bytes(fragment::feed(posts.iter().copied(), &missing))
            }
        };
        Ok(match Conditional::of(body, audience, if_none_match.0) {
            Conditional::Fresh(body, tag, control) => {
                GetPostsResponse::Ok(body, tag, control, VARY.into())
            }
            Conditional::NotModified(tag, control) => {
                GetPostsResponse::NotModified(tag, control, VARY.into())
            }
        })
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
                cache.forget(post_id);
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

/// A feed read with `after_event`, from rows read just now: the posts in the order asked,
/// then the ids that name none.
fn exact_feed(
    asked: &[Uuid],
    rows: Vec<PostRow>,
    liked: Option<&HashSet<Uuid>>,
    applied: bool,
) -> Feed {
    let mut found: HashMap<Uuid, PostRow> =
        rows.into_iter().map(|row| (row.post_id, row)).collect();
    let mut feed = Feed {
        posts: Vec::with_capacity(asked.len()),
        missing: Vec::new(),
        after_event_applied: Some(applied),
    };
    for id in asked {
        match found.remove(id) {
            Some(row) => feed.posts.push(Post::read(row, liked)),
            None => feed.missing.push(*id),
        }
    }
    feed
}
