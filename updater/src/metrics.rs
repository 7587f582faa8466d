//! The updater's Prometheus metrics: one registry per instance (tests run several updaters in
//! one process), served as text on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Route, Server, get, handler, web::Data};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tally_runtime::instance::Instance;

/// Exposed as `tally_updater_instance_info` (an info metric).
pub const INSTANCE: &str = "tally_updater_instance";
pub const EVENTS_APPLIED: &str = "tally_updater_events_applied";
pub const DUPLICATES_DROPPED: &str = "tally_updater_duplicates_dropped";
pub const DEAD_LETTERS: &str = "tally_updater_dead_letters";
pub const DEFERRED: &str = "tally_updater_negative_deferred";
pub const BATCH_SIZE: &str = "tally_updater_batch_size";
pub const APPLY_SECONDS: &str = "tally_updater_apply_seconds";
pub const LAG_SECONDS: &str = "tally_updater_event_lag_seconds";
pub const BATCHES_FAILED: &str = "tally_updater_batches_failed";
pub const INBOX_PRUNED: &str = "tally_updater_inbox_pruned";
pub const COUNT_EVENTS: &str = "tally_updater_count_events";
pub const STAGE_SECONDS: &str = "tally_updater_stage_seconds";

/// Where a batch's time goes, as values of [`STAGE_SECONDS`]'s `stage` label.
pub mod stage {
    /// Waiting for messages with nothing else to do (the stream is idle, or slower than the
    /// updater).
    pub const WAIT: &str = "wait";
    /// Decoding the messages and dropping the duplicates known in memory.
    pub const DECODE: &str = "decode";
    /// The batch's Postgres statements, from taking a connection to the last one.
    pub const STATEMENTS: &str = "statements";
    /// The COMMIT.
    pub const COMMIT: &str = "commit";
    /// Recording what the batch did (memory de-duplication set, verdicts, metrics).
    pub const RECORD: &str = "record";
    /// Publishing the count events.
    pub const PUBLISH: &str = "publish";
    /// Handing the acks to the NATS client.
    pub const ACK: &str = "ack";
    pub const ALL: [&str; 7] = [WAIT, DECODE, STATEMENTS, COMMIT, RECORD, PUBLISH, ACK];
}

/// Seconds spent per stage, summed.
#[derive(Clone, Debug)]
pub struct Stages {
    pub wait: Counter<f64, AtomicU64>,
    pub decode: Counter<f64, AtomicU64>,
    pub statements: Counter<f64, AtomicU64>,
    pub commit: Counter<f64, AtomicU64>,
    pub record: Counter<f64, AtomicU64>,
    pub publish: Counter<f64, AtomicU64>,
    pub ack: Counter<f64, AtomicU64>,
}

/// Adds the time since `since` to `counter` and returns now, for the next stage.
pub fn lap(counter: &Counter<f64, AtomicU64>, since: Instant) -> Instant {
    let now = Instant::now();
    counter.inc_by(now.duration_since(since).as_secs_f64());
    now
}

/// Where a duplicate was caught.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DuplicateLabels {
    /// `memory` (recently applied ids, or twice in one batch) or `inbox` (Postgres).
    pub caught_in: &'static str,
}

/// Why an event was dead-lettered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// `poison` (undecodable or unknown version) or `negative` (would make a count negative).
    pub reason: &'static str,
}

/// What became of a count event (`tally.counts.<post_id>`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CountEventLabels {
    /// `published` or `failed` (not handed to NATS; the post's next change repairs it).
    pub outcome: &'static str,
}

/// Every metric the updater keeps; cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub events_applied: Counter,
    pub duplicates: Family<DuplicateLabels, Counter>,
    pub dead_letters: Family<DeadLetterLabels, Counter>,
    pub deferred: Counter,
    pub batch_size: Histogram,
    pub apply_seconds: Histogram,
    pub lag_seconds: Histogram,
    pub batches_failed: Counter,
    pub inbox_pruned: Counter,
    pub count_events: Family<CountEventLabels, Counter>,
    pub stages: Stages,
    registry: Arc<Registry>,
}

impl Metrics {
    /// The metrics of the replica `instance`, named by `tally_updater_instance_info`.
    pub fn new(instance: &Instance) -> Self {
        let mut registry = Registry::default();
        registry.register(
            INSTANCE,
            "This replica's TALLY_INSTANCE, in the tally_instance label; always 1",
            Info::new(instance.metric_labels()),
        );
        let events_applied = Counter::default();
        registry.register(
            EVENTS_APPLIED,
            "Events whose deltas were applied to post_counts",
            events_applied.clone(),
        );
        let duplicates = Family::<DuplicateLabels, Counter>::default();
        registry.register(
            DUPLICATES_DROPPED,
            "Events dropped as already applied, by where the duplicate was caught",
            duplicates.clone(),
        );
        let dead_letters = Family::<DeadLetterLabels, Counter>::default();
        registry.register(
            DEAD_LETTERS,
            "Events written to dead_letters and terminated, by reason",
            dead_letters.clone(),
        );
        let deferred = Counter::default();
        registry.register(
            DEFERRED,
            "Events held back and redelivered later because they would make a count negative",
            deferred.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(BATCH_SIZE, "Messages per pulled batch", batch_size.clone());
        let apply_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            APPLY_SECONDS,
            "Time to apply and commit one batch",
            apply_seconds.clone(),
        );
        let lag_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register(
            LAG_SECONDS,
            "From an event's time (the api's commit) to its delta being committed",
            lag_seconds.clone(),
        );
        let batches_failed = Counter::default();
        registry.register(
            BATCHES_FAILED,
            "Batches whose transaction failed and were redelivered",
            batches_failed.clone(),
        );
        let inbox_pruned = Counter::default();
        registry.register(
            INBOX_PRUNED,
            "Inbox rows deleted after the retention",
            inbox_pruned.clone(),
        );
        let count_events = Family::<CountEventLabels, Counter>::default();
        registry.register(
            COUNT_EVENTS,
            "Count events (a post's new counts after a commit, on core NATS), by outcome",
            count_events.clone(),
        );
        let stage_seconds =
            Family::<[(&'static str, &'static str); 1], Counter<f64, AtomicU64>>::default();
        registry.register(
            STAGE_SECONDS,
            "Seconds the batch loop spent per stage (see the stage label)",
            stage_seconds.clone(),
        );
        let counter = |name: &'static str| stage_seconds.get_or_create(&[("stage", name)]).clone();
        let stages = Stages {
            wait: counter(stage::WAIT),
            decode: counter(stage::DECODE),
            statements: counter(stage::STATEMENTS),
            commit: counter(stage::COMMIT),
            record: counter(stage::RECORD),
            publish: counter(stage::PUBLISH),
            ack: counter(stage::ACK),
        };
        Self {
            events_applied,
            duplicates,
            dead_letters,
            deferred,
            batch_size,
            apply_seconds,
            lag_seconds,
            batches_failed,
            inbox_pruned,
            count_events,
            stages,
            registry: Arc::new(registry),
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn duplicate(&self, caught_in: &'static str, n: usize) {
        self.duplicates
            .get_or_create(&DuplicateLabels { caught_in })
            .inc_by(n as u64);
    }

    pub fn count_events(&self, outcome: &'static str, n: usize) {
        self.count_events
            .get_or_create(&CountEventLabels { outcome })
            .inc_by(n as u64);
    }

    pub fn dead_letter(&self, reason: &'static str, n: usize) {
        self.dead_letters
            .get_or_create(&DeadLetterLabels { reason })
            .inc_by(n as u64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&Instance::of_this_process())
    }
}

/// The bound metrics listener, served once the updater runs.
pub struct MetricsServer {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

#[handler]
fn render(Data(metrics): Data<&Metrics>) -> poem::Response {
    poem::Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.encode())
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(addr).into_acceptor().await?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(addr);
        Ok(Self {
            acceptor,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `/metrics` until `shutdown` resolves.
    pub async fn serve(
        self,
        metrics: Metrics,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Route::new().at("/metrics", get(render)).data(metrics);
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(1)))
            .await
    }
}
