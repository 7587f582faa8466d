//! Group commit for likes: the likes that arrive while others are being written queue up,
//! and a writer takes everything queued and writes it in one transaction (one commit, one
//! WAL flush, one relay transaction), each like with its own statement, answer and event.
//! Nothing waits for a batch to fill: a like that arrives to an idle writer is written at
//! once, alone, as one statement. When a batch's transaction fails, each of its likes is
//! written again alone, so one failing like fails none of the others, and delays them by
//! that one retry at most.

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use tally_sql::{Event, EventType};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::Statement;
use tracing::instrument;
use uuid::Uuid;

use super::likes::AddLike;
use super::{CONTENDED_ATTEMPTS, StoreError, payload_around_author};

/// A like as one statement. The post CTE locks the live post FOR SHARE before the insert
/// reads it; the outbox row is written only with a new like, its payload the api's own JSON
/// with the post's author spliced in (`to_json` escapes a string as serde_json does). The
/// last column reads a like that was there before (the statement's snapshot cannot see the
/// one it inserts itself, which the second column returns).
const ADD_LIKE: &str = "
    WITH post AS (
        SELECT author_id FROM posts
        WHERE post_id = $1 AND deleted_at IS NULL
        FOR SHARE
    ), added AS (
        INSERT INTO likes (post_id, user_id)
        SELECT $1, $2 FROM post
        ON CONFLICT (post_id, user_id) DO NOTHING
        RETURNING created_at
    ), event AS (
        INSERT INTO outbox (event_id, event_type, subject, post_id, payload, headers)
        SELECT $3, $4, $5, $1,
               ($6::text || to_json(post.author_id)::text || $7::text)::json, $8::text::json
        FROM post, added
    )
    SELECT EXISTS (SELECT 1 FROM post),
           (SELECT created_at FROM added),
           (SELECT created_at FROM likes WHERE post_id = $1 AND user_id = $2)";

/// The most likes one transaction takes.
const MAX_BATCH: usize = 64;
/// Likes queued beyond the writers, before a like waits to be queued.
const QUEUE_DEPTH: usize = 1024;

/// A like waiting for a writer.
struct QueuedLike {
    post_id: Uuid,
    user_id: String,
    /// The outbox row's headers JSON.
    headers: String,
    reply: oneshot::Sender<Result<AddLike, StoreError>>,
}

/// Where likes queue for the writers; the writers stop once every clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct LikeQueue {
    sender: mpsc::Sender<QueuedLike>,
}

impl LikeQueue {
    /// Starts one writer per connection of `writers` (whose statements wait for a lock only
    /// briefly); a like its writer could not write goes again alone on `fallback`.
    pub(super) fn start(writers: Pool, fallback: Pool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.status().max_size.max(1) {
            let pools = (writers.clone(), fallback.clone());
            tokio::spawn(write_queued(pools, Arc::clone(&receiver)));
        }
        Self { sender }
    }

    /// Queues the like and waits for its writer's answer (after the commit).
    pub(super) async fn add(
        &self,
        post_id: Uuid,
        user_id: &str,
        headers: String,
    ) -> Option<Result<AddLike, StoreError>> {
        let (reply, answer) = oneshot::channel();
        let like = QueuedLike {
            post_id,
            user_id: user_id.to_owned(),
            headers,
            reply,
        };
        self.sender.send(like).await.ok()?;
        answer.await.ok()
    }
}

/// One writer: takes what is queued (waiting only for the first like), writes it, answers.
async fn write_queued(
    (writers, fallback): (Pool, Pool),
    receiver: Arc<Mutex<mpsc::Receiver<QueuedLike>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let taken = receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        write_batch(&writers, &fallback, std::mem::take(&mut batch)).await;
    }
}

#[instrument(skip_all, fields(likes = batch.len()))]
async fn write_batch(writers: &Pool, fallback: &Pool, batch: Vec<QueuedLike>) {
    let written = match batch.as_slice() {
        [like] => write_alone(writers, like).await.map(|answer| vec![answer]),
        _ => write_together(writers, &batch).await,
    };
    let err = match written {
        Ok(answers) => {
            for (like, answer) in batch.into_iter().zip(answers) {
                let _ = like.reply.send(Ok(answer));
            }
            return;
        }
        Err(err) => err,
    };
    tracing::warn!(error = %err, likes = batch.len(), "likes failed on their writer; writing each alone");
    // Each on its own connection of the main pool, off this writer: the retries run side by
    // side, wait for locks as long as any write does, and the writer goes back to the queue.
    for like in batch {
        let fallback = fallback.clone();
        tokio::spawn(async move {
            let answer = write_alone(&fallback, &like).await;
            let _ = like.reply.send(answer);
        });
    }
}

/// The batch in one transaction: its statements pipelined on one connection, one commit.
async fn write_together(pool: &Pool, batch: &[QueuedLike]) -> Result<Vec<AddLike>, StoreError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let statement = txn.prepare_cached(ADD_LIKE).await?;
    // Pipelined: tokio-postgres sends each statement on its first poll, in order, without
    // waiting for the answers before.
    let answers =
        futures::future::try_join_all(batch.iter().map(|like| write_like(&txn, &statement, like)))
            .await?;
    txn.commit().await?;
    Ok(answers)
}

/// One like, its own implicit transaction: one round trip.
async fn write_alone(pool: &Pool, like: &QueuedLike) -> Result<AddLike, StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(ADD_LIKE).await?;
    write_like(&client, &statement, like).await
}

async fn write_like(
    client: &impl GenericClient,
    statement: &Statement,
    like: &QueuedLike,
) -> Result<AddLike, StoreError> {
    let QueuedLike {
        post_id, user_id, ..
    } = like;
    // A like that the caller's own concurrent request committed after this statement's
    // snapshot (or removed meanwhile) is neither inserted nor seen: try again, each attempt
    // with a new snapshot.
    for _ in 0..CONTENDED_ATTEMPTS {
        let event = Event::new(EventType::LikeAdded, *post_id, "", user_id);
        let (before_author, after_author) = payload_around_author(&event);
        let row = client
            .query_one(
                statement,
                &[
                    post_id,
                    user_id,
                    &event.id,
                    &event.event_type.as_str(),
                    &event.subject(),
                    &before_author,
                    &after_author,
                    &like.headers,
                ],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            return Ok(AddLike::PostNotFound);
        }
        if let Some(created_at) = row.get(1) {
            return Ok(AddLike::Added {
                created_at,
                event_id: event.id,
            });
        }
        if let Some(created_at) = row.get(2) {
            return Ok(AddLike::AlreadyLiked { created_at });
        }
    }
    Err(StoreError::Contended(CONTENDED_ATTEMPTS))
}
