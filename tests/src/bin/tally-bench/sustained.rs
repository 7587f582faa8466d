//! Scenario 7, sustained load: the api at its maximum write rate (64 clients) for the whole
//! run while the relay and the updater keep up, sampled four times a second: the events
//! still pending for the updater, and how far the newest applied event is behind the newest
//! written one. A pipeline slower than the writer shows as a lag that grows over the run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::Wrk;
use crate::report::Report;
use crate::stack::Stack;

/// How often the lag is sampled during the run.
const EVERY: Duration = Duration::from_millis(250);

/// The updater's state at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// Events the updater has yet to apply (pending and unacked in its consumer).
    pending: u64,
    /// Commit time of the newest event written minus that of the newest event applied.
    lag_ms: f64,
}

/// Runs `wrk` (likes at the maximum rate) and reports the updater's lag at its end, the
/// largest lag during it, and whether the lag grew from the first half to the second.
pub async fn sustained_load(
    stack: &Stack,
    wrk: &Wrk<'_>,
    out: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    stack.drain().await?;
    eprintln!(
        "[bench] sustained load: {} clients for {} s, sampling the updater's lag",
        wrk.connections,
        wrk.duration.as_secs()
    );
    let mut run = std::pin::pin!(wrk.run(out));
    let mut ticks = tokio::time::interval(EVERY);
    let mut samples = Vec::new();
    let run = loop {
        tokio::select! {
            run = &mut run => break run?,
            _ = ticks.tick() => samples.push(sample(stack).await?),
        }
    };
    let end = sample(stack).await?;
    if run.requests == 0 {
        anyhow::bail!("sustained load: no request completed");
    }
    let half = samples.len() / 2;
    let max_of = |part: &[Sample]| part.iter().map(|s| s.lag_ms).fold(0.0, f64::max);
    let (first, second) = samples.split_at(half);
    let label = format!(
        "7. sustained load at {:.0} likes/s for {} s",
        run.per_second,
        wrk.duration.as_secs()
    );
    report.latency(
        &format!("{label}: updater lag at the end (ms)"),
        end.lag_ms,
        "the largest lag during the run",
        max_of(&samples),
    );
    report.latency(
        &format!("{label}: largest lag, second half of the run (ms)"),
        max_of(second),
        "largest lag, first half",
        max_of(first).max(0.1),
    );
    report.note(format!(
        "sustained load: {} events pending for the updater at the end of the run ({} likes \
         written; largest pending during the run {}); lag = commit time of the newest event \
         written minus that of the newest event applied, sampled every {} ms",
        end.pending,
        run.requests,
        samples.iter().map(|s| s.pending).max().unwrap_or(0),
        EVERY.as_millis()
    ));
    stack.drain().await
}

async fn sample(stack: &Stack) -> anyhow::Result<Sample> {
    let (_, pending) = stack.stream_state().await?;
    // The newest applied event is the newest of the last batch committed (its inbox rows
    // share the transaction's processed_at); ids are no clock (the backlog's are random).
    let lag_ms: f64 = stack
        .db
        .query_one(
            "SELECT coalesce(extract(epoch FROM
                 (SELECT max(created_at) FROM outbox)
                 - (SELECT max(o.created_at) FROM inbox i JOIN outbox o USING (event_id)
                    WHERE i.processed_at = (SELECT max(processed_at) FROM inbox))) * 1000,
                 0)::float8",
            &[],
        )
        .await
        .context("measuring the updater's lag")?
        .get(0);
    Ok(Sample {
        pending,
        lag_ms: lag_ms.max(0.0),
    })
}
