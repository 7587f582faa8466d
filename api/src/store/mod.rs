//! The api's Postgres access: every write puts the domain row and its outbox row in one
//! transaction, and writes an outbox row only when the state really changed.
//!
//! One module per resource (`posts`, `likes`, `comments`); this one holds the pool, the
//! errors and what every write shares (the post lock, the outbox insert).

mod comments;
mod group_commit;
mod likes;
mod live;
mod posts;

pub use comments::{AddComment, Comment, RemoveComment};
pub use likes::{AddLike, Liker, RemoveLike, ToggleLike};
pub use live::PostCounts;
pub use posts::{CreatePost, DeletePost, FEED_QUERY, PostRow, VersionedPost};

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tally_sql::Event;
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
    /// The same row kept changing under a write (the caller's own concurrent requests).
    #[error("the row kept changing under a write; gave up after {0} attempts")]
    Contended(usize),
    /// The like writers stopped (the api is shutting down).
    #[error("the like writers stopped")]
    Stopped,
}

impl StoreError {
    /// Whether the database is out of reach (503), rather than a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Disconnected(_) | Self::Stopped
        )
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
pub fn pool(
    database_url: &str,
    application_name: &str,
    size: u16,
    timeout: Duration,
) -> Result<Pool, PoolBuildError> {
    let pg_config = pg_config(database_url, application_name)?;
    build_pool(pg_config, size, timeout)
}

/// The like writers' own connections (see `group_commit`): like [`pool`], but a statement
/// waits at most `LIKE_WRITER_LOCK_TIMEOUT` for a lock, so that one like stuck behind a lock
/// (a post being deleted, an operator's transaction) cannot hold a writer and the likes
/// queued behind it; such a like is written again alone on the main pool, where it waits.
pub fn like_writers_pool(
    database_url: &str,
    application_name: &str,
    size: u16,
    timeout: Duration,
) -> Result<Pool, PoolBuildError> {
    let mut pg_config = pg_config(database_url, application_name)?;
    let options = match pg_config.get_options() {
        Some(options) => format!("{options} -c lock_timeout={LIKE_WRITER_LOCK_TIMEOUT}"),
        None => format!("-c lock_timeout={LIKE_WRITER_LOCK_TIMEOUT}"),
    };
    pg_config.options(options);
    build_pool(pg_config, size, timeout)
}

/// How long a like writer's statement waits for a lock before its like is handed to the
/// main pool.
const LIKE_WRITER_LOCK_TIMEOUT: &str = "200ms";

/// The connection settings `database_url` names, with this replica's `application_name`
/// over one the URL may name: each replica must show as itself in pg_stat_activity.
fn pg_config(
    database_url: &str,
    application_name: &str,
) -> Result<tokio_postgres::Config, PoolBuildError> {
    let mut pg_config: tokio_postgres::Config =
        database_url.parse().map_err(PoolBuildError::Url)?;
    pg_config.application_name(application_name);
    Ok(pg_config)
}

fn build_pool(
    pg_config: tokio_postgres::Config,
    size: u16,
    timeout: Duration,
) -> Result<Pool, PoolBuildError> {
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

/// Request context that travels with the event: the W3C trace of the request, if any.
#[derive(Debug, Default, Clone)]
pub struct EventContext {
    pub traceparent: Option<String>,
}

impl EventContext {
    /// The context of a request with this `traceparent` header; a malformed one is dropped
    /// (as the W3C spec asks) rather than refusing the write.
    pub fn from_traceparent(header: Option<String>) -> Self {
        Self {
            traceparent: crate::trace::valid_traceparent(header),
        }
    }
}

/// How often a write retries when its own row changed between two of its statements (the
/// same user's concurrent like and unlike); each retry needs another concurrent change.
const CONTENDED_ATTEMPTS: usize = 8;

/// The items of a keyset page read through its post (`posts LEFT JOIN LATERAL` the page):
/// no row at all means no live post (None); a lone row of NULLs, a post with nothing on this
/// page, which `item` skips by returning None.
fn page_through_post<T>(
    rows: &[tokio_postgres::Row],
    item: impl Fn(&tokio_postgres::Row) -> Option<T>,
) -> Option<Vec<T>> {
    (!rows.is_empty()).then(|| rows.iter().filter_map(item).collect())
}

/// Postgres access for the api's handlers.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    likes: group_commit::LikeQueue,
}

/// Connections per like writer: of `TALLY_DB_POOL_SIZE` connections, one in this many is a
/// like writer's (at least one); fewer writers than concurrent likes is what lets likes
/// share a commit.
const CONNECTIONS_PER_LIKE_WRITER: u16 = 4;

/// How `size` connections are shared: (main pool, like writers).
pub fn split_pool_size(size: u16) -> (u16, u16) {
    let writers = (size / CONNECTIONS_PER_LIKE_WRITER).max(1);
    (size.saturating_sub(writers).max(1), writers)
}

impl Store {
    /// Starts one like writer per connection of `like_writers` (group commit), so it must
    /// run inside the tokio runtime.
    pub fn new(pool: Pool, like_writers: Pool) -> Self {
        let likes = group_commit::LikeQueue::start(like_writers, pool.clone());
        Self { pool, likes }
    }

    /// Connections in use and idle, for the metrics.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Succeeds when a connection can be had and answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
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
}

/// The author of a live post, locked FOR SHARE so that a concurrent delete of the post waits
/// for this write (and the write for the delete): nothing lands on a deleted post.
async fn live_post_author(
    client: &impl GenericClient,
    post_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT author_id FROM posts WHERE post_id = $1 AND deleted_at IS NULL FOR SHARE",
        )
        .await?;
    let row = client.query_opt(&statement, &[&post_id]).await?;
    Ok(row.map(|row| row.get(0)))
}

/// A post as a write sees it: its author, and whether it was deleted.
struct PostForWrite {
    author: String,
    deleted: bool,
}

/// The post, deleted or not, locked FOR SHARE like [`live_post_author`]: removals go through
/// on a deleted post (a user can always take back their own like or comment), and a removal
/// waiting on a delete is ordered after it all the same.
async fn post_for_write(
    client: &impl GenericClient,
    post_id: Uuid,
) -> Result<Option<PostForWrite>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT author_id, deleted_at IS NOT NULL FROM posts WHERE post_id = $1 FOR SHARE",
        )
        .await?;
    let row = client.query_opt(&statement, &[&post_id]).await?;
    Ok(row.map(|row| PostForWrite {
        author: row.get(0),
        deleted: row.get(1),
    }))
}

/// The outbox row's `headers` JSON: what travels onto the NATS message.
fn outbox_headers(ctx: &EventContext) -> String {
    let mut headers = serde_json::Map::new();
    if let Some(traceparent) = &ctx.traceparent {
        headers.insert(
            tally_sql::HEADER_TRACEPARENT.to_owned(),
            serde_json::Value::String(traceparent.clone()),
        );
    }
    serde_json::Value::Object(headers).to_string()
}

/// The event's JSON cut around its `post_author` value, for a statement that learns the
/// author itself and splices it in: `before + json(author) + after` is the event's JSON with
/// that author. The event must carry an empty author.
fn payload_around_author(event: &Event) -> (String, String) {
    const EMPTY_AUTHOR: &str = "\"post_author\":\"\"";
    let json = event.to_json();
    // The field comes before `actor` (the only other free text), and a string value cannot
    // hold this text unescaped, so the first match is the field itself.
    match json.find(EMPTY_AUTHOR) {
        Some(at) => {
            let value_at = at + EMPTY_AUTHOR.len() - 2;
            (json[..value_at].to_owned(), json[value_at + 2..].to_owned())
        }
        None => (json, String::new()),
    }
}

/// Writes the event's outbox row inside the caller's transaction.
async fn insert_outbox(
    client: &impl GenericClient,
    event: &Event,
    ctx: &EventContext,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO outbox (event_id, event_type, subject, post_id, payload, headers)
             VALUES ($1, $2, $3, $4, $5::text::json, $6::text::json)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &event.id,
                &event.event_type.as_str(),
                &event.subject(),
                &event.post_id,
                &event.to_json(),
                &outbox_headers(ctx),
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_sql::EventType;

    #[test]
    fn the_author_spliced_into_the_cut_payload_gives_the_events_own_json() {
        // Arrange: authors that JSON must escape, and an actor that looks like the field.
        for author in ["alice", "a\"b\\c", "z\u{e9}\u{1f600}", "tab\there"] {
            let event = Event::new(
                EventType::LikeAdded,
                Uuid::now_v7(),
                "",
                "\"post_author\":\"\"",
            );
            let mut expected = event.clone();
            expected.post_author = author.to_owned();

            // Act
            let (before, after) = payload_around_author(&event);
            let spliced = format!("{before}{}{after}", serde_json::json!(author));

            // Assert
            assert_eq!(spliced, expected.to_json());
        }
    }
}
