//! Pruning the inbox: an event id only has to stay while its event can still be redelivered,
//! i.e. for longer than the stream keeps events. Older ids are deleted in small batches so no
//! statement holds many row locks or bloats one transaction. `held_back` rows go once their
//! event is applied or dead-lettered.

use std::time::Duration;

use tracing::instrument;

/// Rows deleted per statement.
pub const PRUNE_BATCH: i64 = 5_000;

/// Deletes inbox rows processed more than `retention` ago, `batch` at a time, and returns
/// how many went. Several updaters may prune at once: one that finds its rows deleted by
/// another just stops early, and the next round catches up.
#[instrument(skip(client))]
pub async fn prune(
    client: &tokio_postgres::Client,
    retention: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let mut total = 0;
    loop {
        let deleted = client
            .execute(
                "DELETE FROM inbox WHERE event_id IN (
                     SELECT event_id FROM inbox
                     WHERE processed_at < now() - make_interval(secs => $1)
                     LIMIT $2)",
                &[&retention.as_secs_f64(), &batch],
            )
            .await?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// Deletes `held_back` rows whose event has since been applied or dead-lettered, or that are
/// older than `retention` (their event can no longer be delivered), and returns how many went.
#[instrument(skip(client))]
pub async fn prune_held_back(
    client: &tokio_postgres::Client,
    retention: Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM held_back h
             WHERE h.first_held_at < now() - make_interval(secs => $1)
                OR EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = h.event_id)
                OR EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = h.event_id::text)",
            &[&retention.as_secs_f64()],
        )
        .await
}

/// Records `retention` in `updater_settings`, where `count_drift` and `recent_events` read
/// it (they cannot read this process's environment).
#[instrument(skip(client))]
pub async fn record_retention(
    client: &tokio_postgres::Client,
    retention: Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO updater_settings (inbox_retention) VALUES (make_interval(secs => $1))
             ON CONFLICT (singleton) DO UPDATE
             SET inbox_retention = EXCLUDED.inbox_retention, recorded_at = now()",
            &[&retention.as_secs_f64()],
        )
        .await
        .map(|_| ())
}
