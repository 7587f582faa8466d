//! Where the relay's and the updater's time goes on the backlog: their per-stage counters
//! (`tally_relay_stage_seconds`, `tally_updater_stage_seconds`) read from their `/metrics`
//! before and after the drain, printed as a note next to their peak memory.

use std::collections::BTreeMap;

use anyhow::Context;
use tally_relay::metrics::{STAGE_SECONDS, stage};
use tally_updater::metrics as updater;

/// Seconds per stage, as the relay's counters stood when read.
#[derive(Debug, Default, Clone)]
pub struct Stages(BTreeMap<String, f64>);

impl Stages {
    /// Reads the counters from the relay's `/metrics` at `addr`.
    pub async fn read(addr: &str) -> anyhow::Result<Stages> {
        Self::read_metric(addr, STAGE_SECONDS).await
    }

    /// Reads the counters from the updater's `/metrics` at `addr`.
    pub async fn read_updater(addr: &str) -> anyhow::Result<Stages> {
        Self::read_metric(addr, updater::STAGE_SECONDS).await
    }

    async fn read_metric(addr: &str, metric: &str) -> anyhow::Result<Stages> {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .with_context(|| format!("reading {metric} from {addr}/metrics"))?
            .text()
            .await?;
        let prefix = format!("{metric}_total{{stage=\"");
        let mut stages = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            if let Some((name, value)) = rest.split_once("\"} ")
                && let Ok(seconds) = value.trim().parse::<f64>()
            {
                stages.insert(name.to_owned(), seconds);
            }
        }
        Ok(Stages(stages))
    }

    /// The note: each stage's seconds over the drain and its share of the drain's wall time.
    pub fn note(&self, before: &Stages, wall_seconds: f64, events: u64, peak_kib: u64) -> String {
        let parts = self.parts(before, &stage::ALL, wall_seconds, events);
        format!(
            "relay on the {events}-event backlog ({wall_seconds:.1} s): {}. The first six stages \
             run one after another on the session's task (read waits for Postgres; window \
             waits for room among the unacknowledged publishes); ack_wait runs beside them on \
             the ack task. Relay peak memory (VmHWM) after the drain: {:.0} MiB",
            parts.join(", "),
            peak_kib as f64 / 1024.0
        )
    }

    /// The updater's note: where a batch's time went over the drain.
    pub fn updater_note(&self, before: &Stages, wall_seconds: f64, events: u64) -> String {
        let parts = self.parts(before, &updater::stage::ALL, wall_seconds, events);
        format!(
            "updater on the {events}-event backlog ({wall_seconds:.1} s): {}. wait is the loop \
             idle for messages; decode, statements, commit and record are one batch's \
             transaction, one after another; publish (count events) and ack follow its commit",
            parts.join(", ")
        )
    }

    /// Each stage's seconds over the drain and its share of the drain's wall time.
    fn parts(
        &self,
        before: &Stages,
        names: &[&str],
        wall_seconds: f64,
        events: u64,
    ) -> Vec<String> {
        names
            .iter()
            .map(|name| {
                let spent = self.0.get(*name).copied().unwrap_or(0.0)
                    - before.0.get(*name).copied().unwrap_or(0.0);
                format!(
                    "{name} {spent:.2} s ({:.0}%, {:.1} µs/event)",
                    100.0 * spent / wall_seconds,
                    1e6 * spent / events.max(1) as f64
                )
            })
            .collect()
    }
}
