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
mod gather;
pub mod hold_back;
pub mod inbox;
pub mod metrics;
mod recent;
pub mod reconcile;
mod upkeep;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

pub use config::{Command, Config, ReconcileArgs};
pub use metrics::Metrics;

use crate::count_events::CountEvents;
use crate::hold_back::HoldBack;
use crate::metrics::MetricsServer;
use crate::recent::RecentIds;
use crate::worker::Worker;

/// Longest pause between attempts to reach a component that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long an applied id is remembered in memory (most redeliveries come well within it).
const RECENT_IDS_TTL: Duration = Duration::from_secs(5 * 60);
/// Most ids remembered in memory: a million of them (a backlog's worth inside the TTL, in
/// moka then) made most of the updater's memory. The inbox is the ledger of record; this only saves round trips for the
/// redeliveries that come soon (a lost ack, a batch redelivered after a failure).
const RECENT_IDS_MAX: usize = 65_536;
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
    recent: RecentIds,
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
        // One connection per worker, and one each for recording the retention and pruning.
        let pool = Pool::builder(manager)
            .max_size(usize::from(config.workers) + 2)
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
        let recent = RecentIds::new(RECENT_IDS_MAX, RECENT_IDS_TTL);
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
        // Each worker pulls, applies and acks its own batches on its own connection, as
        // separate instances would: several transactions in flight let Postgres use more
        // than one core, and the inbox keeps their effect exactly once. A simulated crash
        // stops one worker between commit and ack, so the test hook runs a single one.
        let workers = if crash_after_commit {
            1
        } else {
            config.workers
        };
        let worker = Arc::new(Worker {
            config,
            pool,
            consumer,
            metrics,
            recent,
            hold_back,
            count_events,
        });
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (worker, stop) = (Arc::clone(&worker), stop.clone());
            running.spawn(async move { worker.run(&stop, crash_after_commit).await });
        }
        // A worker ends only when stopped (or, with the test hook, crashed): the rest follow.
        while running.join_next().await.is_some() {
            stop.cancel();
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
