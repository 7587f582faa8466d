//! The benchmark's output: a Markdown table of figures next to their baselines with the ratio,
//! notes, each service's peak memory, and a CSV of latency distributions for the plot.

use std::fmt::Write as _;
use std::path::Path;

use crate::load::Run;
use crate::scenarios::Sizes;
use crate::stack::Memory;

#[derive(Debug)]
struct Row {
    scenario: String,
    tally: String,
    baseline: String,
    ratio: f64,
}

#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    /// (label, [(percentile, latency µs)]) per HTTP run.
    latencies: Vec<(String, Vec<(f64, f64)>)>,
    pub memory: Memory,
}

impl Report {
    /// A rate next to its baseline rate; the ratio is tally ÷ baseline (higher is faster).
    pub fn throughput(&mut self, scenario: &str, tally: f64, baseline: &str, base: f64) {
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            tally: format!("{tally:.0}"),
            baseline: format!("{base:.0} ({baseline})"),
            ratio: tally / base,
        });
    }

    /// A latency next to its baseline latency; the ratio is tally ÷ baseline.
    pub fn latency(&mut self, scenario: &str, tally_ms: f64, baseline: &str, base_ms: f64) {
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            tally: format!("{tally_ms:.1}"),
            baseline: format!("{base_ms:.1} ({baseline})"),
            ratio: tally_ms / base_ms,
        });
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn latencies(&mut self, label: &str, run: &Run) {
        self.latencies
            .push((label.to_owned(), run.percentiles.clone()));
    }

    pub fn markdown(&self, sizes: &Sizes) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tally-bench ({} run) on {}, {} cores, {}\n",
            sizes.name,
            machine(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            broker()
        );
        let _ = writeln!(out, "| scenario | tally | baseline | ratio |");
        let _ = writeln!(out, "|---|---:|---|---:|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} |",
                row.scenario, row.tally, row.baseline, row.ratio
            );
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        let _ = writeln!(
            out,
            "\nPeak memory (VmHWM): api {:.0} MiB, relay {:.0} MiB, updater {:.0} MiB",
            mib(self.memory.api_kib),
            mib(self.memory.relay_kib),
            mib(self.memory.updater_kib)
        );
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        out
    }

    pub fn write_latency_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut csv = String::from("run,percentile,latency_ms\n");
        for (label, points) in &self.latencies {
            for (percentile, us) in points {
                let _ = writeln!(csv, "\"{label}\",{percentile},{:.3}", us / 1000.0);
            }
        }
        std::fs::write(path, csv)
    }
}

/// The nats-server's version, for the table's heading: the relay's rate depends on it.
fn broker() -> String {
    let server = std::env::var("TALLY_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    std::process::Command::new(&server)
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|version| !version.is_empty())
        .unwrap_or_else(|| format!("{server} (version unknown)"))
}

/// The CPU model, for the table's heading.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}
