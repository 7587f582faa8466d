//! The relay's Prometheus metrics: one registry per instance (tests run several relays in one
//! process), served as text on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Route, Server, get, handler, web::Data};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tally_runtime::instance::Instance;

/// Exposed as `tally_relay_instance_info` (an info metric).
pub const INSTANCE: &str = "tally_relay_instance";
pub const EVENTS_PUBLISHED: &str = "tally_relay_events_published";
pub const DUPLICATES: &str = "tally_relay_duplicates";
pub const PUBLISH_SECONDS: &str = "tally_relay_publish_seconds";
pub const IN_FLIGHT: &str = "tally_relay_in_flight";
pub const LAG_BYTES: &str = "tally_relay_replication_lag_bytes";
pub const LAG_SECONDS: &str = "tally_relay_replication_lag_seconds";
pub const CONFIRMED_LSN: &str = "tally_relay_confirmed_lsn";
pub const STREAMING: &str = "tally_relay_streaming";
pub const SESSIONS_FAILED: &str = "tally_relay_sessions_failed";
pub const OUTBOX_PRUNED: &str = "tally_relay_outbox_pruned";
pub const STAGE_SECONDS: &str = "tally_relay_stage_seconds";

/// The stages a relayed event passes through, as values of [`STAGE_SECONDS`]'s `stage` label.
/// The session's stages run one after another on one task; `ack_wait` runs beside them on
/// the ack window's task.
pub mod stage {
    /// Waiting for the next replication message from Postgres.
    pub const READ: &str = "read";
    /// Decoding a pgoutput message.
    pub const DECODE: &str = "decode";
    /// Turning an outbox row into a NATS message (subject, payload, headers).
    pub const BUILD: &str = "build";
    /// The publish call (handing the message to the client; waits while its buffer is full).
    pub const PUBLISH: &str = "publish";
    /// Waiting for room in the window of unacknowledged publishes (backpressure).
    pub const WINDOW: &str = "window";
    /// Reporting confirmed positions to Postgres.
    pub const CONFIRM: &str = "confirm";
    /// The ack task awaiting JetStream's acknowledgements, oldest first.
    pub const ACK_WAIT: &str = "ack_wait";
    pub const ALL: [&str; 7] = [READ, DECODE, BUILD, PUBLISH, WINDOW, CONFIRM, ACK_WAIT];
}

/// Seconds spent per stage, summed.
#[derive(Clone, Debug)]
pub struct Stages {
    pub read: Counter<f64, AtomicU64>,
    pub decode: Counter<f64, AtomicU64>,
    pub build: Counter<f64, AtomicU64>,
    pub publish: Counter<f64, AtomicU64>,
    pub window: Counter<f64, AtomicU64>,
    pub confirm: Counter<f64, AtomicU64>,
    pub ack_wait: Counter<f64, AtomicU64>,
}

/// Adds the time since `since` to `counter` and returns now, for the next stage.
pub fn lap(counter: &Counter<f64, AtomicU64>, since: Instant) -> Instant {
    let now = Instant::now();
    counter.inc_by(now.duration_since(since).as_secs_f64());
    now
}

/// Every metric the relay keeps; cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub events_published: Counter,
    pub duplicates: Counter,
    pub publish_seconds: Histogram,
    pub in_flight: Gauge,
    pub lag_bytes: Gauge,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub confirmed_lsn: Gauge,
    pub streaming: Gauge,
    pub sessions_failed: Counter,
    pub outbox_pruned: Counter,
    pub stages: Stages,
    registry: Arc<Registry>,
}

impl Metrics {
    /// The metrics of the replica `instance`, named by `tally_relay_instance_info`.
    pub fn new(instance: &Instance) -> Self {
        let mut registry = Registry::default();
        registry.register(
            INSTANCE,
            "This replica's TALLY_INSTANCE, in the tally_instance label; always 1",
            Info::new(instance.metric_labels()),
        );
        let events_published = Counter::default();
        registry.register(
            EVENTS_PUBLISHED,
            "Outbox events JetStream acknowledged (duplicates included)",
            events_published.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            DUPLICATES,
            "Events JetStream acknowledged as duplicates of an earlier publish (replays)",
            duplicates.clone(),
        );
        let publish_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            PUBLISH_SECONDS,
            "From publishing an event to JetStream's acknowledgement",
            publish_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            IN_FLIGHT,
            "Events published and not yet acknowledged",
            in_flight.clone(),
        );
        let lag_bytes = Gauge::default();
        registry.register(
            LAG_BYTES,
            "WAL between the server's end (as last seen) and the last confirmed position",
            lag_bytes.clone(),
        );
        let lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            LAG_SECONDS,
            "Age of the newest confirmed transaction when it was confirmed; 0 when caught up",
            lag_seconds.clone(),
        );
        let confirmed_lsn = Gauge::default();
        registry.register(
            CONFIRMED_LSN,
            "The last position confirmed to Postgres, as a 64-bit LSN",
            confirmed_lsn.clone(),
        );
        let streaming = Gauge::default();
        registry.register(
            STREAMING,
            "1 while this instance streams the slot, 0 while it stands by or reconnects",
            streaming.clone(),
        );
        let sessions_failed = Counter::default();
        registry.register(
            SESSIONS_FAILED,
            "Streaming sessions that ended on an error and were retried",
            sessions_failed.clone(),
        );
        let outbox_pruned = Counter::default();
        registry.register(
            OUTBOX_PRUNED,
            "Outbox rows deleted by the retention job",
            outbox_pruned.clone(),
        );
        let stage_seconds =
            Family::<[(&'static str, &'static str); 1], Counter<f64, AtomicU64>>::default();
        registry.register(
            STAGE_SECONDS,
            "Seconds the relay spent per stage of relaying events (see the stage label)",
            stage_seconds.clone(),
        );
        let counter = |name: &'static str| stage_seconds.get_or_create(&[("stage", name)]).clone();
        let stages = Stages {
            read: counter(stage::READ),
            decode: counter(stage::DECODE),
            build: counter(stage::BUILD),
            publish: counter(stage::PUBLISH),
            window: counter(stage::WINDOW),
            confirm: counter(stage::CONFIRM),
            ack_wait: counter(stage::ACK_WAIT),
        };
        Self {
            events_published,
            duplicates,
            publish_seconds,
            in_flight,
            lag_bytes,
            lag_seconds,
            confirmed_lsn,
            streaming,
            sessions_failed,
            outbox_pruned,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&Instance::of_this_process())
    }
}

/// The bound metrics listener, served once the relay runs.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn time_lapped_into_a_stage_is_exported_under_its_stage_label() {
        let metrics = Metrics::default();
        let since = Instant::now() - Duration::from_millis(250);

        lap(&metrics.stages.publish, since);

        let text = metrics.encode();
        let seconds = |name: &str| -> f64 {
            let prefix = format!("{STAGE_SECONDS}_total{{stage=\"{name}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} stage in {text}"))
        };
        assert!(seconds(stage::PUBLISH) >= 0.25);
        for name in stage::ALL.iter().filter(|name| **name != stage::PUBLISH) {
            assert_eq!(seconds(name), 0.0, "{name}");
        }
    }
}
