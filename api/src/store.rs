//! The api's Postgres access: every write puts the domain row and its outbox row in one
//! transaction, and writes an outbox row only when the state really changed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tally_sql::{Event, EventType};
use tokio_postgres::NoTls;
use tracing::instrument;
use uuid::Uuid;

/// Why a store call failed. `Unavailable` and `Disconnected` mean "try again later" (503);
/// `Query` is a bug or a broken invariant (500). Neither text ever reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection")]
    Unavailable(#[source] deadpool_postgres::PoolError),
    #[error("the database connection was lost")]
    Disconnected(#[source] tokio_postgres::Error),
    #[error("database query failed")]
    Query(#[source] tokio_postgres::Error),
}

impl StoreError {
    /// Whether the client should retry later rather than report a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Disconnected(_))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(err)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        // A connection lost mid-request, or a server shutting down, is the database going
        // away (retry later), not a bug.
        let server_going_away = err.code().is_some_and(|code| {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P")
        });
        if err.is_closed() || server_going_away {
            return Self::Disconnected(err);
        }
        Self::Query(err)
    }
}

/// Why the pool could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum PoolBuildError {
    #[error("DATABASE_URL is not a valid Postgres URL")]
    Url(#[source] tokio_postgres::Error),
    #[error("could not build the connection pool")]
    Build(#[source] deadpool_postgres::BuildError),
}

/// Builds a lazily connecting pool: the api starts even while Postgres is down and answers
/// 503 until it comes back.
pub fn pool(database_url: &str, size: u16, timeout: Duration) -> Result<Pool, PoolBuildError> {
    let pg_config: tokio_postgres::Config = database_url.parse().map_err(PoolBuildError::Url)?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(usize::from(size))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(PoolBuildError::Build)
}

/// A post as stored, with its counts.
#[derive(Debug, Clone)]
pub struct PostRow {
    pub post_id: Uuid,
    pub author_id: String,
    pub created_at: DateTime<Utc>,
    pub likes: i64,
    pub comments: i64,
}

/// What creating a post did.
#[derive(Debug)]
pub enum CreatePost {
    Created {
        post: PostRow,
        event_id: Uuid,
    },
    /// The caller already created this post: nothing changed.
    Exists(PostRow),
    /// The id belongs to another author, or to a deleted post.
    Taken,
}

/// What liking a post did.
#[derive(Debug)]
pub enum AddLike {
    Added {
        created_at: DateTime<Utc>,
        event_id: Uuid,
    },
    AlreadyLiked {
        created_at: DateTime<Utc>,
    },
    PostNotFound,
}

/// What unliking a post did.
#[derive(Debug)]
pub enum RemoveLike {
    Removed { event_id: Uuid },
    NotLiked,
    PostNotFound,
}

/// Request context that travels with the event: the W3C trace of the request, if any.
#[derive(Debug, Default, Clone)]
pub struct EventContext {
    pub traceparent: Option<String>,
}

/// Postgres access for the api's handlers.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Succeeds when a connection can be had and answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    #[instrument(skip(self, ctx))]
    pub async fn create_post(
        &self,
        post_id: Uuid,
        author_id: &str,
        ctx: &EventContext,
    ) -> Result<CreatePost, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let inserted = txn
            .query_opt(
                "INSERT INTO posts (post_id, author_id) VALUES ($1, $2)
                 ON CONFLICT (post_id) DO NOTHING
                 RETURNING created_at",
                &[&post_id, &author_id],
            )
            .await?;
        if let Some(row) = inserted {
            let event = Event::new(EventType::PostCreated, post_id, author_id, author_id);
            insert_outbox(&txn, &event, ctx).await?;
            txn.commit().await?;
            let post = PostRow {
                post_id,
                author_id: author_id.to_owned(),
                created_at: row.get(0),
                likes: 0,
                comments: 0,
            };
            return Ok(CreatePost::Created {
                post,
                event_id: event.id,
            });
        }
        drop(txn);
        match self.get_post(post_id).await? {
            Some(post) if post.author_id == author_id => Ok(CreatePost::Exists(post)),
            _ => Ok(CreatePost::Taken),
        }
    }

    /// A live (not deleted) post with its counts.
    #[instrument(skip(self))]
    pub async fn get_post(&self, post_id: Uuid) -> Result<Option<PostRow>, StoreError> {
        Ok(self.get_posts(&[post_id]).await?.pop())
    }

    /// The live posts among `post_ids`, with their counts, in one query.
    #[instrument(skip(self, post_ids), fields(ids = post_ids.len()))]
    pub async fn get_posts(&self, post_ids: &[Uuid]) -> Result<Vec<PostRow>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT p.post_id, p.author_id, p.created_at,
                        coalesce(c.likes, 0), coalesce(c.comments, 0)
                 FROM posts p LEFT JOIN post_counts c USING (post_id)
                 WHERE p.post_id = ANY($1) AND p.deleted_at IS NULL",
                &[&post_ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| PostRow {
                post_id: row.get(0),
                author_id: row.get(1),
                created_at: row.get(2),
                likes: row.get(3),
                comments: row.get(4),
            })
            .collect())
    }

    /// Whether the updater has counted `event_id` (its inbox holds the id once the count
    /// that includes the event is committed).
    #[instrument(skip(self))]
    pub async fn event_applied(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT 1 FROM inbox WHERE event_id = $1", &[&event_id])
            .await?;
        Ok(row.is_some())
    }

    #[instrument(skip(self, ctx))]
    pub async fn add_like(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<AddLike, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        // FOR SHARE: a concurrent delete of the post waits for this like, and vice versa.
        let Some(author) = live_post_author(&txn, post_id).await? else {
            return Ok(AddLike::PostNotFound);
        };
        let inserted = txn
            .query_opt(
                "INSERT INTO likes (post_id, user_id) VALUES ($1, $2)
                 ON CONFLICT (post_id, user_id) DO NOTHING
                 RETURNING created_at",
                &[&post_id, &user_id],
            )
            .await?;
        let Some(row) = inserted else {
            let existing = txn
                .query_one(
                    "SELECT created_at FROM likes WHERE post_id = $1 AND user_id = $2",
                    &[&post_id, &user_id],
                )
                .await?;
            return Ok(AddLike::AlreadyLiked {
                created_at: existing.get(0),
            });
        };
        let event = Event::new(EventType::LikeAdded, post_id, &author, user_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(AddLike::Added {
            created_at: row.get(0),
            event_id: event.id,
        })
    }

    #[instrument(skip(self, ctx))]
    pub async fn remove_like(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<RemoveLike, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let Some(author) = live_post_author(&txn, post_id).await? else {
            return Ok(RemoveLike::PostNotFound);
        };
        let deleted = txn
            .execute(
                "DELETE FROM likes WHERE post_id = $1 AND user_id = $2",
                &[&post_id, &user_id],
            )
            .await?;
        if deleted == 0 {
            return Ok(RemoveLike::NotLiked);
        }
        let event = Event::new(EventType::LikeRemoved, post_id, &author, user_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(RemoveLike::Removed { event_id: event.id })
    }
}

/// What toggling a like did.
#[derive(Debug)]
pub enum ToggleLike {
    /// `liked`: the state after the toggle; `event_id`: the event it wrote (None when a
    /// concurrent request of the same caller had already made that change).
    Toggled {
        liked: bool,
        event_id: Option<Uuid>,
    },
    PostNotFound,
}

impl Store {
    /// Likes the post when the caller does not, unlikes it when they do: one transaction,
    /// one event.
    #[instrument(skip(self, ctx))]
    pub async fn toggle_like(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<ToggleLike, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let Some(author) = live_post_author(&txn, post_id).await? else {
            return Ok(ToggleLike::PostNotFound);
        };
        let removed = txn
            .execute(
                "DELETE FROM likes WHERE post_id = $1 AND user_id = $2",
                &[&post_id, &user_id],
            )
            .await?;
        let (liked, event_type) = if removed > 0 {
            (false, EventType::LikeRemoved)
        } else {
            let inserted = txn
                .execute(
                    "INSERT INTO likes (post_id, user_id) VALUES ($1, $2)
                     ON CONFLICT (post_id, user_id) DO NOTHING",
                    &[&post_id, &user_id],
                )
                .await?;
            if inserted == 0 {
                // A concurrent request of the same caller liked it first: the state is
                // "liked" and that request wrote the event.
                return Ok(ToggleLike::Toggled {
                    liked: true,
                    event_id: None,
                });
            }
            (true, EventType::LikeAdded)
        };
        let event = Event::new(event_type, post_id, &author, user_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(ToggleLike::Toggled {
            liked,
            event_id: Some(event.id),
        })
    }
}

async fn live_post_author(
    client: &impl GenericClient,
    post_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "SELECT author_id FROM posts WHERE post_id = $1 AND deleted_at IS NULL FOR SHARE",
            &[&post_id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Writes the event's outbox row inside the caller's transaction.
async fn insert_outbox(
    client: &impl GenericClient,
    event: &Event,
    ctx: &EventContext,
) -> Result<(), StoreError> {
    let mut headers = serde_json::Map::new();
    if let Some(traceparent) = &ctx.traceparent {
        headers.insert(
            tally_sql::HEADER_TRACEPARENT.to_owned(),
            serde_json::Value::String(traceparent.clone()),
        );
    }
    let headers = serde_json::Value::Object(headers).to_string();
    client
        .execute(
            "INSERT INTO outbox (event_id, event_type, subject, post_id, payload, headers)
             VALUES ($1, $2, $3, $4, $5::text::json, $6::text::json)",
            &[
                &event.id,
                &event.event_type.as_str(),
                &event.subject(),
                &event.post_id,
                &event.to_json(),
                &headers,
            ],
        )
        .await?;
    Ok(())
}
