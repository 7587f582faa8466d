//! Turns a batch of stream messages into one Postgres transaction: dead letters for events
//! that cannot be decoded, inbox rows for the new event ids, and one summed upsert per post
//! (in post-id order, so concurrent updaters lock rows in the same order and cannot deadlock).
//!
//! A summed delta that would take a count below zero trips the `CHECK (... >= 0)` constraint.
//! The batch then falls back, inside the same transaction, to a careful path that holds back
//! only the offending events of that post: they may merely have overtaken the event they undo
//! (another updater's batch still in flight, or one held by a killed updater until the ack wait
//! ends), so they are redelivered, their first hold recorded in `held_back`, until
//! [`HoldBack`] says nothing they can have overtaken is still on its way; only then are they
//! dead-lettered, as the bug signal they then are. The rest of the batch applies either way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tally_sql::{CountsChanged, Event};
use tokio_postgres::Transaction;
use tokio_postgres::error::SqlState;
use tracing::instrument;
use uuid::Uuid;

use crate::hold_back::HoldBack;

/// One message of a batch, decoded or not.
#[derive(Debug)]
pub enum Decoded {
    Event(Event),
    Poison(DeadLetter),
}

/// An event that will never apply; kept in `dead_letters` for inspection.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub subject: String,
    pub event_id: Option<String>,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// A decoded event of the batch, with what the caller knows about its delivery.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub event: &'a Event,
    /// The raw payload, kept verbatim if the event is dead-lettered.
    pub payload: &'a [u8],
    /// How many times JetStream has delivered this message (1 the first time).
    pub deliveries: u64,
    /// Its sequence in the stream, to compare with the consumer's ack floor.
    pub stream_sequence: u64,
}

/// What became of one event of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its delta was applied now.
    Applied,
    /// Already in the inbox: applied before.
    Duplicate,
    /// Would make a count negative; held back for a later redelivery.
    Deferred,
    /// Would make a count negative and has run out of redeliveries: dead-lettered.
    DeadLettered,
}

/// What one batch's transaction did.
#[derive(Debug, Default)]
pub struct Applied {
    /// What became of each event, in order.
    pub verdicts: Vec<Verdict>,
    /// The counts, as this transaction leaves them, of each post it changed.
    pub changed: Vec<CountsChanged>,
}

/// The sum of deltas of one post.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Delta {
    likes: i64,
    comments: i64,
}

impl Delta {
    fn of(event: &Event) -> Self {
        Self {
            likes: event.event_type.like_delta(),
            comments: event.event_type.comment_delta(),
        }
    }
    fn add(&mut self, other: Delta) {
        self.likes += other.likes;
        self.comments += other.comments;
    }
    fn is_zero(self) -> bool {
        self.likes == 0 && self.comments == 0
    }
}

/// Writes the poison messages to `dead_letters` inside `txn`.
#[instrument(skip_all, fields(count = poison.len()))]
pub async fn dead_letter(
    txn: &Transaction<'_>,
    poison: &[DeadLetter],
) -> Result<(), tokio_postgres::Error> {
    if poison.is_empty() {
        return Ok(());
    }
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
    Ok(())
}

/// Applies `events` (distinct ids) inside `txn` and says what became of each, in order, and
/// which counts changed. The caller commits, then acks according to the verdicts. `ack_floor` reads the consumer's
/// ack floor; it is awaited only when an event held back may be dead-lettered.
#[instrument(skip_all, fields(size = events.len()))]
pub async fn apply(
    txn: &Transaction<'_>,
    events: &[Incoming<'_>],
    hold_back: HoldBack,
    ack_floor: impl Future<Output = Option<u64>>,
) -> Result<Applied, tokio_postgres::Error> {
    let mut verdicts = vec![Verdict::Duplicate; events.len()];
    if events.is_empty() {
        return Ok(Applied::default());
    }
    // Sorted, so two transactions inserting overlapping ids (a redelivery racing the original)
    // take the inbox's index locks in the same order.
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.event.id).collect();
    ids.sort_unstable();
    let fresh: HashSet<Uuid, foldhash::fast::RandomState> = txn
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

    let mut deltas: BTreeMap<Uuid, Delta> = BTreeMap::new();
    for (i, incoming) in events.iter().enumerate() {
        if fresh.contains(&incoming.event.id) {
            verdicts[i] = Verdict::Applied;
            deltas
                .entry(incoming.event.post_id)
                .or_default()
                .add(Delta::of(incoming.event));
        }
    }
    deltas.retain(|_, d| !d.is_zero());
    if deltas.is_empty() {
        return Ok(Applied {
            verdicts,
            changed: Vec::new(),
        });
    }

    txn.batch_execute("SAVEPOINT deltas").await?;
    match upsert(txn, &deltas).await {
        Ok(changed) => return Ok(Applied { verdicts, changed }),
        Err(err) if err.code() == Some(&SqlState::CHECK_VIOLATION) => {
            txn.batch_execute("ROLLBACK TO SAVEPOINT deltas").await?;
        }
        Err(err) => return Err(err),
    }
    let changed = hold_back_negatives(txn, events, &mut verdicts, hold_back, ack_floor).await?;
    Ok(Applied { verdicts, changed })
}

/// Reads the counts a `RETURNING post_id, likes, comments, updated_at` gave back.
fn changed_counts(rows: &[tokio_postgres::Row]) -> Vec<CountsChanged> {
    rows.iter()
        .map(|row| CountsChanged {
            post_id: row.get(0),
            likes: row.get(1),
            comments: row.get(2),
            updated_at: row.get(3),
        })
        .collect()
}

/// The common path: one statement, one row write per post however many events it had.
/// Returns the counts it left.
async fn upsert(
    txn: &Transaction<'_>,
    deltas: &BTreeMap<Uuid, Delta>,
) -> Result<Vec<CountsChanged>, tokio_postgres::Error> {
    let posts: Vec<Uuid> = deltas.keys().copied().collect();
    let likes: Vec<i64> = deltas.values().map(|d| d.likes).collect();
    let comments: Vec<i64> = deltas.values().map(|d| d.comments).collect();
    // updated_at only moves forward on a row, whatever the order transactions started in:
    // with several workers, a transaction that started first may commit after another
    // (waiting on its row lock), and `now()` (the transaction's start) would stamp the newer
    // counts with the older time. Viewers of the count events keep the latest updated_at,
    // so they would keep the older counts.
    let rows = txn
        .query(
            "INSERT INTO post_counts AS c (post_id, likes, comments)
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[]) ORDER BY 1
             ON CONFLICT (post_id) DO UPDATE
             SET likes = c.likes + excluded.likes,
                 comments = c.comments + excluded.comments,
                 updated_at = greatest(clock_timestamp(), c.updated_at + interval '1 microsecond')
             RETURNING post_id, likes, comments, updated_at",
            &[&posts, &likes, &comments],
        )
        .await?;
    Ok(changed_counts(&rows))
}

/// An event of the batch that cannot apply now: it would take its post's `what` count, now
/// `count`, below zero.
struct Held {
    index: usize,
    what: &'static str,
    count: i64,
}

/// The careful path, after the summed upsert hit the non-negative constraint: lock every post
/// of the batch (in post-id order), then per post apply all increments and as many decrements
/// as the count allows. Deltas commute, so this order changes no final count; it only holds
/// back the fewest events. Held-back events leave the inbox again (they are not applied).
/// Returns the counts it changed.
async fn hold_back_negatives(
    txn: &Transaction<'_>,
    events: &[Incoming<'_>],
    verdicts: &mut [Verdict],
    hold_back: HoldBack,
    ack_floor: impl Future<Output = Option<u64>>,
) -> Result<Vec<CountsChanged>, tokio_postgres::Error> {
    let mut by_post: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, verdict) in verdicts.iter().enumerate() {
        if *verdict == Verdict::Applied {
            by_post.entry(events[i].event.post_id).or_default().push(i);
        }
    }
    let posts: Vec<Uuid> = by_post.keys().copied().collect();
    // One ordered pass that creates missing rows and locks existing ones, exactly like the
    // summed upsert, so this path keeps the lock order every updater uses.
    let current: BTreeMap<Uuid, Delta> = txn
        .query(
            "INSERT INTO post_counts AS c (post_id) SELECT unnest($1::uuid[]) ORDER BY 1
             ON CONFLICT (post_id) DO UPDATE SET likes = c.likes
             RETURNING post_id, likes, comments",
            &[&posts],
        )
        .await?
        .iter()
        .map(|row| {
            (
                row.get(0),
                Delta {
                    likes: row.get(1),
                    comments: row.get(2),
                },
            )
        })
        .collect();

    let mut deltas: BTreeMap<Uuid, Delta> = BTreeMap::new();
    let mut held = Vec::new();
    for (post, mut indexes) in by_post {
        let start = current.get(&post).copied().unwrap_or_default();
        let mut running = start;
        // Increments first: the order that holds back the fewest decrements.
        indexes.sort_by_key(|&i| {
            let d = Delta::of(events[i].event);
            (d.likes + d.comments) < 0
        });
        for index in indexes {
            let delta = Delta::of(events[index].event);
            let next = Delta {
                likes: running.likes + delta.likes,
                comments: running.comments + delta.comments,
            };
            if next.likes >= 0 && next.comments >= 0 {
                running = next;
                continue;
            }
            let (what, count) = if delta.likes < 0 {
                ("like", running.likes)
            } else {
                ("comment", running.comments)
            };
            held.push(Held { index, what, count });
        }
        let delta = Delta {
            likes: running.likes - start.likes,
            comments: running.comments - start.comments,
        };
        if !delta.is_zero() {
            deltas.insert(post, delta);
        }
    }

    let mut changed = Vec::new();
    if !deltas.is_empty() {
        let posts: Vec<Uuid> = deltas.keys().copied().collect();
        let likes: Vec<i64> = deltas.values().map(|d| d.likes).collect();
        let comments: Vec<i64> = deltas.values().map(|d| d.comments).collect();
        // Every row is locked already, so the update's own order does not matter.
        let rows = txn
            .query(
                "UPDATE post_counts AS c
                 SET likes = c.likes + d.likes, comments = c.comments + d.comments,
                     updated_at = greatest(clock_timestamp(), c.updated_at + interval '1 microsecond')
                 FROM unnest($1::uuid[], $2::int8[], $3::int8[]) AS d(post_id, likes, comments)
                 WHERE c.post_id = d.post_id
                 RETURNING c.post_id, c.likes, c.comments, c.updated_at",
                &[&posts, &likes, &comments],
            )
            .await?;
        changed = changed_counts(&rows);
    }
    if held.is_empty() {
        return Ok(changed);
    }
    let held_ids: Vec<Uuid> = held.iter().map(|h| events[h.index].event.id).collect();
    txn.execute("DELETE FROM inbox WHERE event_id = ANY($1)", &[&held_ids])
        .await?;
    let held_for = record_holds(txn, events, &held).await?;

    // The ack floor is read once, and only when some event has waited out its time.
    let mut ack_floor = Some(ack_floor);
    let mut floor = None;
    let mut dead = Vec::new();
    for Held { index, what, count } in held {
        let incoming = events[index];
        let event = incoming.event;
        let held_for = held_for.get(&event.id).copied().unwrap_or_default();
        let mut give_up = hold_back.waited_out(incoming.deliveries, held_for);
        if give_up {
            if let Some(read) = ack_floor.take() {
                floor = read.await;
            }
            give_up = HoldBack::floor_reached(floor, incoming.stream_sequence);
        }
        if !give_up {
            verdicts[index] = Verdict::Deferred;
            continue;
        }
        verdicts[index] = Verdict::DeadLettered;
        tracing::error!(event_id = %event.id, post_id = %event.post_id,
            event_type = %event.event_type, count, deliveries = incoming.deliveries,
            held_secs = held_for.as_secs(),
            "an event would make a count negative though nothing before it is in flight: dead-lettered");
        dead.push(DeadLetter {
            subject: event.subject(),
            event_id: Some(event.id.to_string()),
            payload: incoming.payload.to_vec(),
            reason: format!(
                "{} would make the {what} count of post {} negative ({count} - 1), still after \
                 {} s held back and {} deliveries, with every earlier event in the stream acked",
                event.event_type,
                event.post_id,
                held_for.as_secs(),
                incoming.deliveries
            ),
        });
    }
    dead_letter(txn, &dead).await?;
    Ok(changed)
}

/// Records each held event in `held_back` (the first hold sets `first_held_at`) and returns
/// how long each has been held. Rows are written in event-id order, so two updaters holding
/// the same events (a redelivery racing the original) cannot deadlock.
async fn record_holds(
    txn: &Transaction<'_>,
    events: &[Incoming<'_>],
    held: &[Held],
) -> Result<HashMap<Uuid, Duration>, tokio_postgres::Error> {
    let mut rows: Vec<(Uuid, Uuid, &str)> = held
        .iter()
        .map(|h| {
            let event = events[h.index].event;
            (event.id, event.post_id, event.event_type.as_str())
        })
        .collect();
    rows.sort_unstable();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let posts: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.2).collect();
    Ok(txn
        .query(
            "INSERT INTO held_back AS h (event_id, post_id, event_type)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])
             ON CONFLICT (event_id) DO UPDATE
             SET last_held_at = now(), holds = h.holds + 1
             RETURNING event_id, extract(epoch FROM now() - first_held_at)::float8",
            &[&ids, &posts, &types],
        )
        .await?
        .iter()
        .map(|row| {
            let secs: f64 = row.get(1);
            (row.get(0), Duration::from_secs_f64(secs.max(0.0)))
        })
        .collect())
}
