//! tally's updater: pulls events off the JetStream stream in batches and applies them to
//! `post_counts` exactly once: inbox rows and summed deltas commit in one transaction, and
//! the batch is acked only after that commit, so a redelivered event changes nothing.
//!
//! Duplicates are dropped twice: first in memory (ids this instance applied in the last few
//! minutes, which catches most redeliveries without a round trip), then by the inbox, which
//! is the real guarantee and holds across instances.
//!
//! Start it with [`Updater::build`] then [`Updater::run_until_stopped`].

pub mod batch;
pub mod config;
pub mod count_events;
pub mod hold_back;
pub mod inbox;
pub mod metrics;
pub mod reconcile;
mod upkeep;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use tally_sql::{CountsChanged, Event};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use tracing::instrument;
use uuid::Uuid;

pub use config::{Command, Config, ReconcileArgs};
pub use metrics::Metrics;

use crate::batch::{DeadLetter, Decoded, Incoming, Verdict};
use crate::count_events::CountEvents;
use crate::hold_back::HoldBack;
use crate::metrics::MetricsServer;

/// How long a failed batch waits before JetStream redelivers it.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest pause between attempts to reach a component that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long an applied id is remembered in memory (most redeliveries come well within it).
const RECENT_IDS_TTL: Duration = Duration::from_secs(5 * 60);
/// Most ids remembered in memory (16 bytes each, plus moka's overhead).
const RECENT_IDS_MAX: u64 = 1_000_000;
/// How long messages handed back at shutdown wait before JetStream delivers them again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);
/// Longest time spent handing back prefetched messages at shutdown.
const HAND_BACK_FOR: Duration = Duration::from_secs(1);
/// The updater's name to Postgres and NATS: `tally-updater/<TALLY_INSTANCE>`.
pub const SERVICE: &str = "tally-updater";

/// Why the updater could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error("DATABASE_URL is not a valid Postgres URL")]
    DatabaseUrl(#[source] tokio_postgres::Error),
    #[error("could not build the Postgres pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    #[error("could not connect to NATS at {url}")]
    Nats {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("could not create the durable consumer {name}")]
    Consumer {
        name: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error(
        "TALLY_UPDATER_INBOX_RETENTION_SECS ({retention}s) must be longer than the stream's max age ({max_age}s), or a redelivered event could be applied twice"
    )]
    RetentionTooShort { retention: u64, max_age: u64 },
    #[error("could not listen on TALLY_UPDATER_METRICS_ADDR {addr}")]
    MetricsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why one batch could not be applied (it is redelivered).
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("no Postgres connection")]
    Connection(#[source] deadpool_postgres::PoolError),
    #[error("the batch transaction failed")]
    Transaction(#[source] tokio_postgres::Error),
}

/// A built updater, connected and bound to its durable consumer and metrics address.
pub struct Updater {
    config: Config,
    pool: Pool,
    consumer: PullConsumer,
    metrics: Metrics,
    metrics_server: MetricsServer,
    recent: moka::future::Cache<Uuid, ()>,
    hold_back: HoldBack,
    count_events: CountEvents,
    crash_after_commit: bool,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("config", &self.config)
            .field("metrics_addr", &self.metrics_server.local_addr())
            .finish_non_exhaustive()
    }
}

/// What one message turned into, before the database had its say.
enum Step {
    /// Poison: dead-lettered with the batch, then terminated.
    Poison,
    /// Already applied (known in memory, or twice in this batch): acked.
    Duplicate,
    /// To apply: index into the batch's events.
    Apply(usize),
}

impl Updater {
    /// Connects to NATS, waits for the stream (the relay creates it), and creates or binds the
    /// durable pull consumer; binds the metrics listener. Postgres is connected lazily, so a
    /// database outage at start is waited out like one later.
    pub async fn build(config: Config) -> Result<Self, UpdaterError> {
        let mut pg_config: tokio_postgres::Config = config
            .database_url
            .parse()
            .map_err(UpdaterError::DatabaseUrl)?;
        let client_name = config.instance.client_name(SERVICE);
        pg_config.application_name(&client_name);
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(3)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(UpdaterError::Pool)?;

        let metrics_server = MetricsServer::bind(config.metrics_addr)
            .await
            .map_err(|source| UpdaterError::MetricsBind {
                addr: config.metrics_addr,
                source,
            })?;

        let client = async_nats::ConnectOptions::new()
            .name(client_name)
            .retry_on_initial_connect()
            .connect(&config.nats_url)
            .await
            .map_err(|source| UpdaterError::Nats {
                url: config.nats_url.clone(),
                source,
            })?;
        let js = jetstream::new(client.clone());
        let stream = wait_for_stream(&js).await;
        let max_age = stream.cached_info().config.max_age;
        if !max_age.is_zero() && config.inbox_retention <= max_age {
            return Err(UpdaterError::RetentionTooShort {
                retention: config.inbox_retention.as_secs(),
                max_age: max_age.as_secs(),
            });
        }
        let consumer = stream
            .get_or_create_consumer(
                &config.consumer,
                jetstream::consumer::pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    description: Some("tally-updater: applies events to post_counts".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: 20_000,
                    filter_subject: tally_sql::STREAM_SUBJECTS.into(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| UpdaterError::Consumer {
                name: config.consumer.clone(),
                source,
            })?;
        // The consumer's own ack wait (an existing consumer keeps the one it was made with).
        let ack_wait = consumer.cached_info().config.ack_wait;
        let hold_back = HoldBack::new(config.negative_retries, ack_wait);
        let recent = moka::future::Cache::builder()
            .time_to_live(RECENT_IDS_TTL)
            .max_capacity(RECENT_IDS_MAX)
            .build();
        let metrics = Metrics::new(&config.instance);
        let count_events = CountEvents::new(
            client,
            metrics.clone(),
            &stream.cached_info().config.subjects,
        );
        Ok(Self {
            metrics,
            config,
            pool,
            consumer,
            metrics_server,
            recent,
            hold_back,
            count_events,
            crash_after_commit: false,
        })
    }

    /// The address `/metrics` is served on (useful with port 0).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_server.local_addr()
    }

    /// This instance's metrics.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Test hook: after the first batch commits, stop at once without acking it, as a process
    /// killed between commit and ack would.
    #[doc(hidden)]
    pub fn crash_after_commit(mut self) -> Self {
        self.crash_after_commit = true;
        self
    }

    /// Applies batches until `shutdown` resolves. A batch already pulled is finished
    /// (committed and acked) before returning.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(consumer = %self.config.consumer,
            metrics_addr = %self.metrics_server.local_addr(), "updater running");
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        let on_shutdown = tokio::spawn(async move {
            shutdown.await;
            stopper.cancel();
        });
        let Updater {
            config,
            pool,
            consumer,
            metrics,
            metrics_server,
            recent,
            hold_back,
            count_events,
            crash_after_commit,
        } = self;
        let server =
            tokio::spawn(metrics_server.serve(metrics.clone(), stop.clone().cancelled_owned()));
        let recorder = tokio::spawn(upkeep::record_retention(
            pool.clone(),
            config.inbox_retention,
            stop.clone(),
        ));
        let pruner = tokio::spawn(upkeep::prune_periodically(
            pool.clone(),
            config.inbox_retention,
            metrics.clone(),
            stop.clone(),
        ));
        let worker = Worker {
            config,
            pool,
            consumer,
            metrics,
            recent,
            hold_back,
            count_events,
        };

        let mut backoff = Duration::from_millis(100);
        let mut pulling: Option<jetstream::consumer::pull::Stream> = None;
        loop {
            let Some(stream) = pulling.as_mut() else {
                match worker.open().await {
                    Ok(stream) => pulling = Some(stream),
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
            let Some(messages) = worker.next_batch(stream, &stop).await else {
                // Stopped, or the pull stream ended: reopen it unless stopping.
                if stop.is_cancelled() {
                    break;
                }
                pulling = None;
                continue;
            };
            match worker.commit(&messages).await {
                Ok((acks, changed)) => {
                    backoff = Duration::from_millis(100);
                    if crash_after_commit {
                        tracing::warn!("test hook: stopping between commit and ack");
                        break;
                    }
                    worker.count_events.publish(&changed).await;
                    worker.ack(&messages, acks).await;
                }
                Err(err) => {
                    worker.metrics.batches_failed.inc();
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
        if let Some(stream) = pulling.take().filter(|_| !crash_after_commit) {
            hand_back(stream, worker.config.batch_size).await;
        }
        stop.cancel();
        on_shutdown.abort();
        let _ = pruner.await;
        let _ = recorder.await;
        if let Ok(Err(err)) = server.await {
            tracing::warn!(error = %err, "the metrics server failed");
        }
        tracing::info!("updater stopped cleanly");
    }
}

/// The batch loop's state, apart from what runs beside it.
struct Worker {
    config: Config,
    pool: Pool,
    consumer: PullConsumer,
    metrics: Metrics,
    recent: moka::future::Cache<Uuid, ()>,
    hold_back: HoldBack,
    count_events: CountEvents,
}

/// How to ack each message of a committed batch, and the counts it changed.
type Committed = (Vec<AckKind>, Vec<CountsChanged>);

impl Worker {
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

    /// Waits for a first message (or `stop`), then collects more until the batch is full or
    /// the batch wait has passed. None when stopped or when the pull stream ended.
    async fn next_batch(
        &self,
        stream: &mut jetstream::consumer::pull::Stream,
        stop: &CancellationToken,
    ) -> Option<Vec<jetstream::Message>> {
        let first = loop {
            let next = tokio::select! {
                () = stop.cancelled() => return None,
                next = stream.next() => next,
            };
            match next? {
                Ok(message) => break message,
                Err(err) => {
                    tracing::warn!(error = %err, "pulling from JetStream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.config.batch_wait;
        while batch.len() < self.config.batch_size as usize {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(message))) => batch.push(message),
                Ok(Some(Err(err))) => {
                    tracing::debug!(error = %err, "pull error while filling a batch");
                }
                Ok(None) | Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Applies one batch and commits; returns how to ack each message and the counts changed.
    #[instrument(skip_all, fields(size = messages.len()))]
    async fn commit(&self, messages: &[jetstream::Message]) -> Result<Committed, BatchError> {
        let started = Instant::now();
        self.metrics.batch_size.observe(messages.len() as f64);
        let mut events: Vec<(Event, usize)> = Vec::new();
        let mut poison = Vec::new();
        let mut steps = Vec::with_capacity(messages.len());
        let mut in_batch = HashSet::new();
        for (index, message) in messages.iter().enumerate() {
            match decode(message) {
                Decoded::Poison(dead) => {
                    poison.push(dead);
                    steps.push(Step::Poison);
                }
                Decoded::Event(event) => {
                    if !in_batch.insert(event.id) || self.recent.contains_key(&event.id) {
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
        txn.commit().await.map_err(BatchError::Transaction)?;
        self.metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());

        // Only now is the batch durable: record what it did.
        let now = chrono::Utc::now();
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
                            self.recent.insert(event.id, ()).await;
                            AckKind::Ack
                        }
                        Verdict::Duplicate => {
                            counts[1] += 1;
                            self.recent.insert(event.id, ()).await;
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

/// The stream is created by the relay; until it exists there is nothing to consume.
async fn wait_for_stream(js: &jetstream::Context) -> jetstream::stream::Stream {
    let mut backoff = Duration::from_millis(100);
    loop {
        match js.get_stream(tally_sql::STREAM).await {
            Ok(stream) => return stream,
            Err(err) => {
                tracing::info!(stream = tally_sql::STREAM, error = %err,
                    "waiting for the stream (the relay creates it)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
