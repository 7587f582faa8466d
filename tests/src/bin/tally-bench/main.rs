//! `tally-bench`: measures every stage of tally next to a baseline run in the same process,
//! and prints the figures as a Markdown table of ratios. `./dev bench [--quick]` runs it
//! against the dev Postgres cluster (durable settings, a fresh database per run) with a
//! private nats-server and the release binaries of the three services.
//!
//! Benchmarks assert nothing: correctness is the tests' job. Every figure is a ratio against
//! a baseline measured in the same run, because shared machines are noisy.

mod breakdown;
mod broker;
mod feed;
mod live;
mod load;
mod report;
mod round_trips;
mod scenarios;
mod stack;
mod stored;
mod sustained;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Command-line options; every one can also come from the environment.
#[derive(Debug, Parser)]
#[command(
    name = "tally-bench",
    about = "Benchmarks every stage of tally against a baseline"
)]
struct Args {
    /// Short runs and a 100,000-event backlog (under 3 minutes) instead of the full run.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (comma-separated numbers, e.g. `3,4`), plus the ones they
    /// build on: 4 needs 3's relay rate, 5 and 8 need 1's write rate. Default: every scenario.
    #[arg(
        long,
        env = "TALLY_BENCH_ONLY",
        value_name = "TALLY_BENCH_ONLY",
        value_delimiter = ','
    )]
    only: Vec<u8>,
    /// Superuser URL of the Postgres cluster to benchmark on (its `postgres` database); a
    /// fresh database is created in it for the run.
    #[arg(long, env = "TALLY_BENCH_PG_URL", value_name = "TALLY_BENCH_PG_URL")]
    pg_url: String,
    /// Directory holding the release binaries tally-api, tally-relay and tally-updater.
    #[arg(long, env = "TALLY_BENCH_BIN_DIR", value_name = "TALLY_BENCH_BIN_DIR")]
    bin_dir: PathBuf,
    /// Where the table, the latency CSV and the services' logs go.
    #[arg(long, env = "TALLY_BENCH_OUT", default_value = "target/bench")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut sizes = if args.quick {
        scenarios::Sizes::quick()
    } else {
        scenarios::Sizes::full()
    };
    sizes.select(&args.only)?;
    let mut stack = stack::Stack::start(&args.pg_url, &args.bin_dir, &args.out)
        .await
        .context("starting the system under test")?;
    let outcome = scenarios::run_all(&mut stack, &sizes, &args.out).await;
    let memory = stack.stop().await;
    let mut report = outcome.context("running the scenarios")?;
    report.memory = memory;
    let table = report.markdown(&sizes);
    println!("{table}");
    std::fs::write(args.out.join("results.md"), &table)?;
    report.write_latency_csv(&args.out.join("latency.csv"))?;
    eprintln!(
        "wrote {0}/results.md and {0}/latency.csv",
        args.out.display()
    );
    Ok(())
}
