//! Turns a batch of stream messages into one Postgres transaction: inbox rows for the new
//! event ids, one summed upsert per post (in post-id order), and dead letters for events
//! that cannot be decoded.

use std::collections::BTreeMap;

use tally_sql::Event;
use tokio_postgres::Transaction;
use tracing::instrument;
use uuid::Uuid;

/// One message of a batch, decoded or not.
#[derive(Debug)]
pub enum Decoded {
    Event(Event),
    Poison(DeadLetter),
}

/// An event that will never apply; kept in `dead_letters` for inspection.
#[derive(Debug)]
pub struct DeadLetter {
    pub subject: String,
    pub event_id: Option<String>,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// What applying a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events whose deltas were applied now.
    pub applied: usize,
    /// Events already in the inbox (redeliveries, or the same id twice).
    pub duplicates: usize,
    /// Events written to dead letters.
    pub dead_lettered: usize,
}

/// Per-post summed deltas, ordered by post id so concurrent updaters lock rows in the same
/// order and cannot deadlock.
#[derive(Debug, Default)]
struct Deltas(BTreeMap<Uuid, (i64, i64)>);

impl Deltas {
    fn add(&mut self, event: &Event) {
        let entry = self.0.entry(event.post_id).or_default();
        entry.0 += event.event_type.like_delta();
        entry.1 += event.event_type.comment_delta();
    }
}

/// Applies the batch inside `txn` (the caller commits, then acks).
#[instrument(skip_all, fields(size = batch.len()))]
pub async fn apply(
    txn: &Transaction<'_>,
    batch: &[Decoded],
) -> Result<Applied, tokio_postgres::Error> {
    let mut outcome = Applied::default();

    let poison: Vec<&DeadLetter> = batch
        .iter()
        .filter_map(|d| match d {
            Decoded::Poison(p) => Some(p),
            Decoded::Event(_) => None,
        })
        .collect();
    if !poison.is_empty() {
        let subjects: Vec<&str> = poison.iter().map(|p| p.subject.as_str()).collect();
        let ids: Vec<Option<&str>> = poison.iter().map(|p| p.event_id.as_deref()).collect();
        let payloads: Vec<&[u8]> = poison.iter().map(|p| p.payload.as_slice()).collect();
        let reasons: Vec<&str> = poison.iter().map(|p| p.reason.as_str()).collect();
        txn.execute(
            "INSERT INTO dead_letters (subject, event_id, payload, reason)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])",
            &[&subjects, &ids, &payloads, &reasons],
        )
        .await?;
        outcome.dead_lettered = poison.len();
    }

    let events: Vec<&Event> = batch
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(e) => Some(e),
            Decoded::Poison(_) => None,
        })
        .collect();
    if events.is_empty() {
        return Ok(outcome);
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    // ON CONFLICT DO NOTHING also drops an id repeated inside this batch: only its first
    // row is inserted and returned.
    let fresh: std::collections::HashSet<Uuid> = txn
        .query(
            "INSERT INTO inbox (event_id) SELECT unnest($1::uuid[])
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id",
            &[&ids],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();

    let mut deltas = Deltas::default();
    let mut seen = std::collections::HashSet::new();
    for event in &events {
        if fresh.contains(&event.id) && seen.insert(event.id) {
            deltas.add(event);
            outcome.applied += 1;
        } else {
            outcome.duplicates += 1;
        }
    }
    if deltas.0.is_empty() {
        return Ok(outcome);
    }
    let posts: Vec<Uuid> = deltas.0.keys().copied().collect();
    let likes: Vec<i64> = deltas.0.values().map(|d| d.0).collect();
    let comments: Vec<i64> = deltas.0.values().map(|d| d.1).collect();
    txn.execute(
        "INSERT INTO post_counts AS c (post_id, likes, comments)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[]) ORDER BY 1
         ON CONFLICT (post_id) DO UPDATE
         SET likes = c.likes + excluded.likes,
             comments = c.comments + excluded.comments,
             updated_at = now()",
        &[&posts, &likes, &comments],
    )
    .await?;
    Ok(outcome)
}
