//! One batch loop: pull a batch (the next one gathers while this one commits), apply it in
//! one transaction, publish the counts it changed, ack. The updater runs several of these
//! side by side, each on its own pull stream and connection, exactly as several instances
//! sharing the durable consumer would.

use std::collections::HashSet;

use foldhash::fast::RandomState as FastHash;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use deadpool_postgres::Pool;
use futures::StreamExt;
use tally_sql::{CountsChanged, Event};
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::batch::{self, DeadLetter, Decoded, Incoming, Verdict};
use crate::count_events::CountEvents;
use crate::gather::Gatherer;
use crate::hold_back::HoldBack;
use crate::metrics::lap;
use crate::recent::RecentIds;
use crate::{BatchError, Config, MAX_BACKOFF, Metrics};

/// How long a failed batch waits before JetStream redelivers it.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long messages handed back at shutdown wait before JetStream delivers them again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);
/// Longest time spent handing back prefetched messages at shutdown.
const HAND_BACK_FOR: Duration = Duration::from_secs(1);

/// What one message turned into, before the database had its say.
enum Step {
    /// Poison: dead-lettered with the batch, then terminated.
    Poison,
    /// Already applied (known in memory, or twice in this batch): acked.
    Duplicate,
    /// To apply: index into the batch's events.
    Apply(usize),
}

/// The batch loop's state, apart from what runs beside it.
pub(crate) struct Worker {
    pub(crate) config: Config,
    pub(crate) pool: Pool,
    pub(crate) consumer: PullConsumer,
    pub(crate) metrics: Metrics,
    pub(crate) recent: RecentIds,
    pub(crate) hold_back: HoldBack,
    pub(crate) count_events: CountEvents,
}

/// How to ack each message of a committed batch, and the counts it changed.
type Committed = (Vec<AckKind>, Vec<CountsChanged>);

impl Worker {
    /// Runs batches until `stop` (handing back what this loop had prefetched), or, with the
    /// test hook, until the first commit.
    pub(crate) async fn run(&self, stop: &CancellationToken, crash_after_commit: bool) {
        let mut backoff = Duration::from_millis(100);
        let mut pulling: Option<jetstream::consumer::pull::Stream> = None;
        let mut gatherer = Gatherer::new(self.config.batch_size);
        loop {
            let Some(stream) = pulling.as_mut() else {
                match self.open().await {
                    Ok(stream) => {
                        pulling = Some(stream);
                        gatherer.reopened();
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "pulling from JetStream failed; retrying");
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                continue;
            };
            let waited = Instant::now();
            let batch = gatherer.next_batch(stream, stop).await;
            lap(&self.metrics.stages.wait, waited);
            let Some(messages) = batch else {
                // Stopped, or the pull stream ended: reopen it unless stopping.
                if stop.is_cancelled() {
                    break;
                }
                pulling = None;
                continue;
            };
            // The next batch gathers while this one commits.
            match gatherer.during(stream, self.commit(&messages)).await {
                Ok((acks, changed)) => {
                    backoff = Duration::from_millis(100);
                    if crash_after_commit {
                        tracing::warn!("test hook: stopping between commit and ack");
                        break;
                    }
                    let since = Instant::now();
                    self.count_events.publish(&changed).await;
                    let since = lap(&self.metrics.stages.publish, since);
                    self.ack(&messages, acks).await;
                    lap(&self.metrics.stages.ack, since);
                }
                Err(err) => {
                    self.metrics.batches_failed.inc();
                    tracing::warn!(error = %err, source = ?std::error::Error::source(&err),
                        "batch not applied; it will be redelivered");
                    for message in &messages {
                        let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        // Not after a simulated crash, which hands nothing back.
        if !crash_after_commit {
            let gathered = gatherer.take_ready();
            for message in &gathered {
                let _ = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
            }
            if let Some(stream) = pulling.take() {
                hand_back(stream, self.config.batch_size).await;
            }
        }
    }

    /// A long-lived pull: JetStream keeps up to a batch of messages flowing to this instance,
    /// so none is ever sent to a pull request that already gave up (such a message would
    /// only come back after the ack wait).
    async fn open(&self) -> Result<jetstream::consumer::pull::Stream, async_nats::Error> {
        Ok(self
            .consumer
            .stream()
            .max_messages_per_batch(self.config.batch_size as usize)
            .messages()
            .await?)
    }

    /// Applies one batch and commits; returns how to ack each message and the counts changed.
    #[instrument(skip_all, fields(size = messages.len()))]
    async fn commit(&self, messages: &[jetstream::Message]) -> Result<Committed, BatchError> {
        let started = Instant::now();
        self.metrics.batch_size.observe(messages.len() as f64);
        let mut events: Vec<(Event, usize)> = Vec::new();
        let mut poison = Vec::new();
        let mut steps = Vec::with_capacity(messages.len());
        let mut in_batch = HashSet::with_capacity_and_hasher(messages.len(), FastHash::default());
        for (index, message) in messages.iter().enumerate() {
            match decode(message) {
                Decoded::Poison(dead) => {
                    poison.push(dead);
                    steps.push(Step::Poison);
                }
                Decoded::Event(event) => {
                    if !in_batch.insert(event.id) || self.recent.contains(&event.id) {
                        steps.push(Step::Duplicate);
                    } else {
                        steps.push(Step::Apply(events.len()));
                        events.push((event, index));
                    }
                }
            }
        }
        let incoming: Vec<Incoming<'_>> = events
            .iter()
            .map(|(event, index)| {
                let info = messages[*index].info().ok();
                Incoming {
                    event,
                    payload: &messages[*index].payload,
                    deliveries: info.as_ref().map_or(1, |i| i.delivered.max(1) as u64),
                    // Unknown: taken as the newest, so the ack floor never vouches for it.
                    stream_sequence: info.map_or(u64::MAX, |i| i.stream_sequence),
                }
            })
            .collect();
        let stages = &self.metrics.stages;
        let since = lap(&stages.decode, started);

        let mut client = self.pool.get().await.map_err(BatchError::Connection)?;
        let txn = client
            .transaction()
            .await
            .map_err(BatchError::Transaction)?;
        batch::dead_letter(&txn, &poison)
            .await
            .map_err(BatchError::Transaction)?;
        let ack_floor = async {
            match self.consumer.get_info().await {
                Ok(info) => Some(info.ack_floor.stream_sequence),
                Err(err) => {
                    tracing::warn!(error = %err, "could not read the consumer's ack floor; holding back");
                    None
                }
            }
        };
        let batch::Applied { verdicts, changed } =
            batch::apply(&txn, &incoming, self.hold_back, ack_floor)
                .await
                .map_err(BatchError::Transaction)?;
        let since = lap(&stages.statements, since);
        txn.commit().await.map_err(BatchError::Transaction)?;
        let since = lap(&stages.commit, since);
        self.metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());

        // Only now is the batch durable: record what it did.
        let now = chrono::Utc::now();
        let committed = Instant::now();
        let mut memory_duplicates = 0;
        let mut acks = Vec::with_capacity(messages.len());
        let mut counts = [0usize; 4];
        for step in steps {
            acks.push(match step {
                Step::Poison => AckKind::Term,
                Step::Duplicate => {
                    memory_duplicates += 1;
                    AckKind::Ack
                }
                Step::Apply(i) => {
                    let event = incoming[i].event;
                    match verdicts[i] {
                        Verdict::Applied => {
                            counts[0] += 1;
                            let lag = (now - event.time).to_std().unwrap_or_default();
                            self.metrics.lag_seconds.observe(lag.as_secs_f64());
                            self.recent.insert(event.id, committed);
                            AckKind::Ack
                        }
                        Verdict::Duplicate => {
                            counts[1] += 1;
                            self.recent.insert(event.id, committed);
                            AckKind::Ack
                        }
                        Verdict::Deferred => {
                            counts[2] += 1;
                            tracing::warn!(event_id = %event.id, post_id = %event.post_id,
                                event_type = %event.event_type, deliveries = incoming[i].deliveries,
                                "an event would make a count negative; redelivering it later");
                            AckKind::Nak(Some(self.hold_back.delay(incoming[i].deliveries)))
                        }
                        Verdict::DeadLettered => {
                            counts[3] += 1;
                            AckKind::Term
                        }
                    }
                }
            });
        }
        self.metrics.events_applied.inc_by(counts[0] as u64);
        self.metrics.duplicate("inbox", counts[1]);
        self.metrics.duplicate("memory", memory_duplicates);
        self.metrics.deferred.inc_by(counts[2] as u64);
        self.metrics.dead_letter("negative", counts[3]);
        self.metrics.dead_letter("poison", poison.len());
        tracing::debug!(
            applied = counts[0],
            inbox_duplicates = counts[1],
            memory_duplicates,
            deferred = counts[2],
            dead_lettered = counts[3] + poison.len(),
            "batch committed"
        );
        lap(&stages.record, since);
        Ok((acks, changed))
    }

    /// Acks the committed batch. A lost ack means a redelivery, which memory or the inbox
    /// turns into a no-op.
    async fn ack(&self, messages: &[jetstream::Message], acks: Vec<AckKind>) {
        let acks = messages.iter().zip(acks).map(|(message, kind)| async move {
            if let Err(err) = message.ack_with(kind).await {
                tracing::warn!(error = %err, "ack failed; the event will be redelivered and dropped as a duplicate");
            }
        });
        futures::future::join_all(acks).await;
    }
}

/// Hands back, at shutdown, the messages this instance had prefetched, so that other
/// instances get them within [`HAND_BACK_DELAY`] rather than after the ack wait. Each goes
/// back with that delay: handed back at once, the server delivered it straight back to this
/// still-subscribed pull stream, round and round, and the updater never stopped. Reading the
/// stream also asks for more, so at most two batches are handed back, within
/// [`HAND_BACK_FOR`]; whatever arrives later comes back after the ack wait, as after a crash.
async fn hand_back(mut stream: jetstream::consumer::pull::Stream, batch_size: u32) {
    let deadline = tokio::time::Instant::now() + HAND_BACK_FOR;
    let most = 2 * batch_size as usize;
    let mut handed = 0;
    while handed < most && tokio::time::Instant::now() < deadline {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(20), stream.next()).await
        else {
            break;
        };
        let _ = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
        handed += 1;
    }
    tracing::info!(handed, "prefetched messages handed back");
}

fn decode(message: &jetstream::Message) -> Decoded {
    match Event::decode(&message.payload) {
        Ok(event) => Decoded::Event(event),
        Err(err) => {
            let event_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(tally_sql::HEADER_MSG_ID))
                .map(|v| v.as_str().to_owned());
            tracing::warn!(subject = %message.subject, error = %err, "dead-lettering an undecodable event");
            Decoded::Poison(DeadLetter {
                subject: message.subject.to_string(),
                event_id,
                payload: message.payload.to_vec(),
                reason: err.to_string(),
            })
        }
    }
}
