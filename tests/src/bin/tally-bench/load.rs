//! The load generators: Debian's wrk for HTTP (with tests/bench/wrk.lua) and pgbench for the
//! SQL baselines. Each run returns its throughput and latency distribution.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::process::Command;

/// Where tests/bench lives, resolved at build time so the binary runs from any directory.
pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench")
}

/// One load run's outcome.
#[derive(Debug, Clone)]
pub struct Run {
    pub requests: u64,
    pub per_second: f64,
    /// Requests that failed at the transport or answered outside 2xx/3xx.
    pub failures: u64,
    /// (percentile, latency in µs); empty when the tool reports only a mean.
    pub percentiles: Vec<(f64, f64)>,
    pub mean_us: f64,
}

impl Run {
    /// The latency at `percentile`, in milliseconds (NaN when not measured).
    pub fn latency_ms(&self, percentile: f64) -> f64 {
        self.percentiles
            .iter()
            .find(|(p, _)| (*p - percentile).abs() < 1e-9)
            .map_or(f64::NAN, |(_, us)| us / 1000.0)
    }
}

/// What wrk.lua's `done` writes.
#[derive(Debug, Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: u64,
    errors: u64,
    non_2xx: u64,
    mean_us: f64,
    percentiles: Vec<(f64, f64)>,
}

/// One wrk run against the api.
#[derive(Debug, Clone)]
pub struct Wrk<'a> {
    pub base_url: &'a str,
    pub mode: &'a str,
    pub connections: u32,
    pub duration: Duration,
    pub tokens: Option<&'a Path>,
    pub posts: Option<&'a Path>,
    pub hot: bool,
    pub delay_ms: u64,
    pub path: &'a str,
}

impl Wrk<'_> {
    pub async fn run(&self, out_dir: &Path) -> anyhow::Result<Run> {
        let threads = self.connections.clamp(1, 2);
        let summary_file = out_dir.join(format!("wrk-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&summary_file);
        let path_of = |file: Option<&Path>| file.map_or("-".into(), |f| f.display().to_string());
        let output = Command::new("wrk")
            .arg(format!("-t{threads}"))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(bench_dir().join("wrk.lua"))
            .arg(self.base_url)
            .env("TALLY_WRK_MODE", self.mode)
            .env("TALLY_WRK_TOKENS", path_of(self.tokens))
            .env("TALLY_WRK_POSTS", path_of(self.posts))
            .env("TALLY_WRK_HOT", if self.hot { "1" } else { "0" })
            .env("TALLY_WRK_DELAY_MS", self.delay_ms.to_string())
            .env("TALLY_WRK_THREADS", threads.to_string())
            .env("TALLY_WRK_PATH", self.path)
            .env("TALLY_WRK_OUT", &summary_file)
            .output()
            .await
            .context("running wrk (install it: apt-get install wrk)")?;
        if !output.status.success() {
            bail!(
                "wrk failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let text = std::fs::read_to_string(&summary_file)
            .with_context(|| format!("reading wrk's summary {}", summary_file.display()))?;
        let summary: WrkSummary = serde_json::from_str(&text).context("parsing wrk's summary")?;
        let seconds = summary.duration_us as f64 / 1e6;
        Ok(Run {
            requests: summary.requests,
            per_second: summary.requests as f64 / seconds.max(1e-9),
            failures: summary.errors + summary.non_2xx,
            percentiles: summary.percentiles,
            mean_us: summary.mean_us,
        })
    }
}

/// How pgbench sends its statements (`-M`).
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// Each statement as text, parsed anew.
    Simple,
    /// Each statement prepared once per connection, as the api's cached statements are.
    Prepared,
}

/// One pgbench run of `script` (a file in tests/bench) with `-D` variables.
pub async fn pgbench(
    url: &str,
    script: &str,
    clients: u32,
    duration: Duration,
    vars: &[(&str, String)],
    protocol: Protocol,
) -> anyhow::Result<Run> {
    let mut command = Command::new("pgbench");
    command
        .arg("-n")
        .arg(match protocol {
            Protocol::Simple => "-Msimple",
            Protocol::Prepared => "-Mprepared",
        })
        .arg(format!("-c{clients}"))
        .arg(format!("-j{}", clients.clamp(1, 2)))
        .arg(format!("-T{}", duration.as_secs().max(1)))
        .arg("-f")
        .arg(bench_dir().join(script));
    for (name, value) in vars {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let output = command.arg(url).output().await.context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench {script} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let field = |prefix: &str| -> anyhow::Result<f64> {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .with_context(|| format!("pgbench printed no `{prefix}`: {stdout}"))
    };
    let tps = field("tps =")?;
    let latency_ms = field("latency average =")?;
    let processed = field("number of transactions actually processed:")?;
    let failed = field("number of failed transactions:").unwrap_or(0.0);
    Ok(Run {
        requests: processed as u64,
        per_second: tps,
        failures: failed as u64,
        percentiles: Vec::new(),
        mean_us: latency_ms * 1000.0,
    })
}
