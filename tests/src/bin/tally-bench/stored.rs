//! Scenario 5's commit → stored in the stream: for each event of the run, the outbox row's
//! commit time against the time JetStream stored its message (the stream message's
//! timestamp, set by the broker), so the relay's share of the end-to-end latency shows on
//! its own.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::StreamExt;

/// How long reading the run's messages back may take before the bench gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The stream's last sequence now: the run's messages come after it.
pub async fn last_sequence(context: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = context.get_stream(tally_sql::STREAM).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// `Nats-Msg-Id` → stored time (Unix nanoseconds) of every message after sequence `after`
/// up to the stream's last sequence now.
pub async fn stored_times(
    context: &jetstream::Context,
    after: u64,
) -> anyhow::Result<HashMap<String, i128>> {
    let stream = context.get_stream(tally_sql::STREAM).await?;
    let last = last_sequence(context).await?;
    let mut times = HashMap::new();
    if last <= after {
        return Ok(times);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer to read the run back")?;
    let mut messages = consumer.messages().await?;
    let read = async {
        while let Some(message) = messages.next().await {
            let message = message.context("reading the run's messages back")?;
            let info = message.info().map_err(|err| anyhow::anyhow!("{err}"))?;
            let sequence = info.stream_sequence;
            let stored = info.published.unix_timestamp_nanos();
            if let Some(id) = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(tally_sql::HEADER_MSG_ID))
            {
                times.insert(id.as_str().to_owned(), stored);
            }
            if sequence >= last {
                break;
            }
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(result) => result?,
        Err(_) => bail!("reading the run's messages back took over {READ_TIMEOUT:?}"),
    }
    Ok(times)
}

/// Whether Postgres records commit times (`track_commit_timestamp`): then a row's commit
/// time is its transaction's real commit, else its `created_at` (the transaction's start,
/// which adds the transaction's own duration to the figure).
pub async fn tracks_commit_times(db: &tokio_postgres::Client) -> anyhow::Result<bool> {
    let row = db.query_one("SHOW track_commit_timestamp", &[]).await?;
    Ok(row.get::<_, &str>(0) == "on")
}

/// An outbox row's commit time in SQL: its transaction's real commit when Postgres records
/// them, else its `created_at`.
pub async fn commit_time(db: &tokio_postgres::Client) -> anyhow::Result<&'static str> {
    Ok(if tracks_commit_times(db).await? {
        "coalesce(pg_xact_commit_timestamp(xmin), created_at)"
    } else {
        "created_at"
    })
}

/// Commit → stored, in milliseconds, for every outbox row of type `like.added` committed at
/// or after `since` whose message is in `stored`.
pub async fn commit_to_stored_ms(
    db: &tokio_postgres::Client,
    since: chrono::DateTime<chrono::Utc>,
    stored: &HashMap<String, i128>,
) -> anyhow::Result<Vec<f64>> {
    let committed = commit_time(db).await?;
    let rows = db
        .query(
            &format!(
                "SELECT event_id::text, (extract(epoch FROM {committed}) * 1000000)::bigint \
                 FROM outbox WHERE created_at >= $1 AND event_type = 'like.added'"
            ),
            &[&since],
        )
        .await
        .context("reading the run's commit times")?;
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|row| {
            let id: &str = row.get(0);
            let committed_us: i64 = row.get(1);
            stored
                .get(id)
                .map(|nanos| (*nanos as f64 / 1000.0 - committed_us as f64) / 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}

/// The nearest-rank percentile of sorted `values` (NaN when empty).
pub fn percentile(sorted: &[f64], percentile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
