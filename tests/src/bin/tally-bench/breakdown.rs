//! Where the relay's time goes on the backlog: its per-stage counters
//! (`tally_relay_stage_seconds`) read from its `/metrics` before and after the drain, printed
//! as a note next to its peak memory.

use std::collections::BTreeMap;

use anyhow::Context;
use tally_relay::metrics::{STAGE_SECONDS, stage};

/// Seconds per stage, as the relay's counters stood when read.
#[derive(Debug, Default, Clone)]
pub struct Stages(BTreeMap<String, f64>);

impl Stages {
    /// Reads the counters from the relay's `/metrics` at `addr`.
    pub async fn read(addr: &str) -> anyhow::Result<Stages> {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .context("reading the relay's /metrics")?
            .text()
            .await?;
        let prefix = format!("{STAGE_SECONDS}_total{{stage=\"");
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
        let mut parts = Vec::new();
        for name in stage::ALL {
            let spent = self.0.get(name).copied().unwrap_or(0.0)
                - before.0.get(name).copied().unwrap_or(0.0);
            parts.push(format!(
                "{name} {spent:.2} s ({:.0}%, {:.1} µs/event)",
                100.0 * spent / wall_seconds,
                1e6 * spent / events.max(1) as f64
            ));
        }
        format!(
            "relay on the {events}-event backlog ({wall_seconds:.1} s): {}. The first six stages \
             run one after another on the session's task (read waits for Postgres; window \
             waits for room among the unacknowledged publishes); ack_wait runs beside them on \
             the ack task. Relay peak memory (VmHWM) after the drain: {:.0} MiB",
            parts.join(", "),
            peak_kib as f64 / 1024.0
        )
    }
}
