//! The api's Prometheus metrics, served beside the api at `/metrics` (OpenMetrics text; like
//! `/healthz`, keep it off the public internet at the load balancer): one registry per
//! instance, so tests can run several apis in one process.

use std::sync::Arc;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tally_runtime::instance::Instance;

use crate::store::Store;

/// Exposed as `tally_api_instance_info` (an info metric).
pub const INSTANCE: &str = "tally_api_instance";
pub const REQUESTS: &str = "tally_api_requests";
pub const REQUEST_SECONDS: &str = "tally_api_request_seconds";
pub const COUNTS_CACHE: &str = "tally_api_counts_cache_lookups";
pub const COUNTS_CACHE_QUERIES: &str = "tally_api_counts_cache_queries";
pub const DB_CONNECTIONS: &str = "tally_api_db_connections";
pub const LIVE_STREAMS: &str = "tally_api_live_streams";
pub const LIVE_EVENTS_SENT: &str = "tally_api_live_events_sent";
pub const LIVE_EVENTS_COALESCED: &str = "tally_api_live_events_coalesced";

/// The label of requests no operation answered (unknown routes, the spec, the docs).
const NO_OPERATION: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The OpenAPI `operationId` (e.g. `likePost`), or `none`.
    pub operation: &'static str,
    /// The HTTP status answered (429: refused by the per-user write limit).
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `in_use` or `idle`.
    pub state: &'static str,
}

/// Every metric the api keeps; cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<OperationLabels, Histogram>,
    pub counts_cache: Family<CacheLabels, Counter>,
    pub counts_cache_queries: Counter,
    pub db_connections: Family<ConnectionLabels, Gauge>,
    pub live_streams: Gauge,
    pub live_events_sent: Counter,
    pub live_events_coalesced: Counter,
    registry: Arc<Registry>,
}

impl Metrics {
    /// The metrics of the replica `instance`, named by `tally_api_instance_info`.
    pub fn new(instance: &Instance) -> Self {
        let mut registry = Registry::default();
        registry.register(
            INSTANCE,
            "This replica's TALLY_INSTANCE, in the tally_instance label; always 1",
            Info::new(instance.metric_labels()),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            REQUESTS,
            "Requests answered, by operation and status",
            requests.clone(),
        );
        let request_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            REQUEST_SECONDS,
            "Time from a request's arrival to its answer, by operation",
            request_seconds.clone(),
        );
        let counts_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            COUNTS_CACHE,
            "Feed-read lookups of a post in the counts cache, by hit or miss",
            counts_cache.clone(),
        );
        let counts_cache_queries = Counter::default();
        registry.register(
            COUNTS_CACHE_QUERIES,
            "Queries the counts cache sent to Postgres: its misses (one per batch, shared by concurrent readers) and its background re-reads",
            counts_cache_queries.clone(),
        );
        let db_connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            DB_CONNECTIONS,
            "Postgres connections of the pool, in use or idle, when last scraped",
            db_connections.clone(),
        );
        let live_streams = Gauge::default();
        registry.register(
            LIVE_STREAMS,
            "Live streams (GET /v1/live) open now",
            live_streams.clone(),
        );
        let live_events_sent = Counter::default();
        registry.register(
            LIVE_EVENTS_SENT,
            "Events (counts and missing) written to live streams",
            live_events_sent.clone(),
        );
        let live_events_coalesced = Counter::default();
        registry.register(
            LIVE_EVENTS_COALESCED,
            "Count changes a live stream replaced by newer ones before sending (the per-post rate limit)",
            live_events_coalesced.clone(),
        );
        Self {
            requests,
            request_seconds,
            counts_cache,
            counts_cache_queries,
            db_connections,
            live_streams,
            live_events_sent,
            live_events_coalesced,
            registry: Arc::new(registry),
        }
    }

    /// The registry in OpenMetrics text, with the pool's connections read now.
    pub fn encode(&self, store: &Store) -> String {
        let status = store.pool_status();
        let in_use = status.size.saturating_sub(status.available);
        self.db_connections
            .get_or_create(&ConnectionLabels { state: "in_use" })
            .set(i64::try_from(in_use).unwrap_or(i64::MAX));
        self.db_connections
            .get_or_create(&ConnectionLabels { state: "idle" })
            .set(i64::try_from(status.available).unwrap_or(i64::MAX));
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

/// Counts and times every request by the operation that answered it.
impl<E: Endpoint> Middleware<E> for Metrics {
    type Output = MetricsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        MetricsEndpoint {
            inner,
            metrics: self.clone(),
        }
    }
}

/// [`Metrics`] applied to an endpoint.
#[derive(Debug)]
pub struct MetricsEndpoint<E> {
    inner: E,
    metrics: Metrics,
}

impl<E: Endpoint> Endpoint for MetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let response = match self.inner.call(req).await {
            Ok(output) => output.into_response(),
            Err(err) => err.into_response(),
        };
        let operation = response
            .data::<OperationId>()
            .map_or(NO_OPERATION, |id| id.0);
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                operation,
                status: response.status().as_u16(),
            })
            .inc();
        self.metrics
            .request_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        Ok(response)
    }
}
