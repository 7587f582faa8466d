//! Liveness and readiness probes for load balancers and orchestrators.

use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, payload::PlainText};

use crate::store::Store;
use crate::tags::ApiTags;

/// The probes.
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

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: answers while the process serves HTTP.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthzResponse {
        HealthzResponse::Ok(PlainText("ok"))
    }

    /// Readiness: answers 200 only while Postgres is reachable.
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
}
