//! The updater's upkeep beside its batch loop: recording its inbox retention for the
//! `count_drift` view, and pruning the inbox and the held-back marks of what it no longer
//! needs.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::MAX_BACKOFF;
use crate::inbox;
use crate::metrics::Metrics;

/// How often the inbox is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Records the inbox retention as soon as Postgres answers (it may be down at start, as later),
/// retrying until it is recorded or the updater stops.
pub(crate) async fn record_retention(pool: Pool, retention: Duration, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let recorded = match pool.get().await {
            Ok(client) => inbox::record_retention(&client, retention)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match recorded {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = %err, "recording the inbox retention failed; retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Prunes the inbox soon after start, then every [`PRUNE_EVERY`], until `stop`.
pub(crate) async fn prune_periodically(
    pool: Pool,
    retention: Duration,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut next = Duration::from_secs(10);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(next) => {}
        }
        next = PRUNE_EVERY;
        let client = match pool.get().await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "inbox pruning skipped: no Postgres connection");
                continue;
            }
        };
        match inbox::prune(&client, retention, inbox::PRUNE_BATCH).await {
            Ok(deleted) => {
                metrics.inbox_pruned.inc_by(deleted);
                if deleted > 0 {
                    tracing::info!(deleted, "inbox pruned");
                }
            }
            Err(err) => tracing::warn!(error = %err, "inbox pruning failed; retrying later"),
        }
        match inbox::prune_held_back(&client, retention).await {
            Ok(deleted) if deleted > 0 => tracing::info!(deleted, "held_back pruned"),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "held_back pruning failed; retrying later"),
        }
    }
}
