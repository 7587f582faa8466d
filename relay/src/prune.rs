//! Outbox retention: deletes rows older than the configured age, in small batches, through
//! the `prune_outbox` function (SECURITY DEFINER: the relay's role may only read the
//! outbox). The function deletes only rows the slot has confirmed, so an unpublished event
//! is never pruned however old it is.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::config::Config;
use crate::error::RelayError;
use crate::metrics::Metrics;

/// Rows deleted per statement: small enough to keep each transaction and its locks short.
const BATCH_SIZE: i32 = 5_000;
/// Most batches per run, so one run never holds the job for long after a long outage.
const MAX_BATCHES_PER_RUN: usize = 200;

/// Runs the retention job every `prune_interval` until `stop` is cancelled. Failures are
/// logged and retried at the next interval: retention is never urgent.
pub async fn run(config: Config, metrics: Metrics, stop: CancellationToken) {
    let Some(retention) = config.outbox_retention else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.prune_interval) => {}
        }
        // A run against an unreachable Postgres may hang in connect; shutdown must not.
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = prune_once(&config, retention, &stop) => outcome,
        };
        match outcome {
            Ok(0) => {}
            Ok(deleted) => {
                metrics.outbox_pruned.inc_by(deleted);
                tracing::info!(deleted, "pruned published outbox rows past the retention");
            }
            Err(err) => {
                tracing::warn!(error = %err.chain(), "pruning the outbox failed; retrying later")
            }
        }
    }
}

#[instrument(skip_all)]
async fn prune_once(
    config: &Config,
    retention: Duration,
    stop: &CancellationToken,
) -> Result<u64, RelayError> {
    let (client, connection) = config
        .postgres()?
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(RelayError::PostgresConnect)?;
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "prune connection closed");
        }
    });
    let statement = "SELECT prune_outbox($1, make_interval(secs => $2), $3)";
    let seconds = retention.as_secs_f64();
    let mut total = 0u64;
    let mut result = Ok(());
    for _ in 0..MAX_BATCHES_PER_RUN {
        if stop.is_cancelled() {
            break;
        }
        match client
            .query_one(statement, &[&config.slot, &seconds, &BATCH_SIZE])
            .await
        {
            Ok(row) => {
                let deleted: i64 = row.get(0);
                total += deleted.max(0) as u64;
                if deleted < i64::from(BATCH_SIZE) {
                    break;
                }
            }
            Err(source) => {
                result = Err(RelayError::Postgres {
                    doing: "pruning the outbox",
                    source,
                });
                break;
            }
        }
    }
    drop(client);
    let _ = connection.await;
    result.map(|()| total)
}
