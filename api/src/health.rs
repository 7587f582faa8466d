//! Liveness and readiness probes for load balancers and orchestrators, and the metrics for
//! Prometheus.

use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, payload::PlainText};

use crate::metrics::Metrics;
use crate::store::Store;
use crate::tags::ApiTags;

/// The probes and the metrics.
#[derive(Debug)]
pub struct HealthApi;

#[derive(Debug, ApiResponse)]
pub enum HealthzResponse {
    /// The process is up and serving HTTP.
    #[oai(status = 200)]
    Ok(PlainText<&'static str>),
}

#[derive(Debug, ApiResponse)]
pub enum ReadyzResponse {
    /// Postgres answers: the api can take writes.
    #[oai(status = 200)]
    Ready(PlainText<&'static str>),
    /// Postgres is unreachable: writes would fail.
    #[oai(status = 503)]
    NotReady(PlainText<&'static str>),
}

#[derive(Debug, ApiResponse)]
pub enum MetricsResponse {
    /// Every metric of this api instance in OpenMetrics text, which Prometheus scrapes.
    #[oai(
        status = 200,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness
    ///
    /// Answers 200 while the process serves HTTP, whatever the state of Postgres; restart the
    /// process when it stops answering.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthzResponse {
        HealthzResponse::Ok(PlainText("ok"))
    }

    /// Readiness
    ///
    /// Answers 200 only while Postgres is reachable (the api can take writes), 503 otherwise;
    /// take the instance out of the load balancer while it is 503.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, store: Data<&Store>) -> ReadyzResponse {
        match store.ping().await {
            Ok(()) => ReadyzResponse::Ready(PlainText("ready")),
            Err(err) => {
                tracing::warn!(error = %err, "not ready");
                ReadyzResponse::NotReady(PlainText("database unreachable"))
            }
        }
    }

    /// Metrics
    ///
    /// Prometheus metrics of this instance: request counts and latencies by operation and
    /// status, counts-cache hits and misses, database connections in use.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, metrics: Data<&Metrics>, store: Data<&Store>) -> MetricsResponse {
        MetricsResponse::Ok(PlainText(metrics.encode(&store)))
    }
}
