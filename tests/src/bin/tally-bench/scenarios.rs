//! The scenarios of the benchmark, each measured next to its baseline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::breakdown::Stages;
use crate::broker;
use crate::load::{Protocol, Run, Wrk, pgbench};
use crate::report::Report;
use crate::round_trips;
use crate::stack::{JWT_SECRET, Stack};
use crate::stored;
use crate::sustained;

/// How big and how long: `--quick` or the full run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub name: &'static str,
    /// Length of each load run.
    pub duration: Duration,
    /// Outbox rows in the relay and updater backlog.
    pub backlog: u64,
    /// Distinct users (bearer tokens) the likes come from.
    pub users: u64,
    /// The scenarios to run (by number); empty runs all of them.
    pub only: Vec<u8>,
}

impl Sizes {
    pub fn quick() -> Self {
        Self {
            name: "quick",
            duration: Duration::from_secs(5),
            backlog: 100_000,
            users: 20_000,
            only: Vec::new(),
        }
    }

    pub fn full() -> Self {
        Self {
            name: "full",
            duration: Duration::from_secs(15),
            backlog: 1_000_000,
            users: 100_000,
            only: Vec::new(),
        }
    }

    /// Keeps only the scenarios named (and the ones they build on); an unknown number is an
    /// error rather than an empty run.
    pub fn select(&mut self, only: &[u8]) -> anyhow::Result<()> {
        if let Some(n) = only.iter().find(|n| !(1..=SCENARIOS).contains(*n)) {
            bail!(
                "TALLY_BENCH_ONLY: there is no scenario {n} (they are numbered 1 to {SCENARIOS})"
            );
        }
        let mut chosen = only.to_vec();
        for (needs, builds_on) in [(4, 3), (5, 1), (8, 1)] {
            if chosen.contains(&needs) && !chosen.contains(&builds_on) {
                chosen.push(builds_on);
            }
        }
        self.only = chosen;
        Ok(())
    }

    /// Whether scenario `n` runs.
    pub fn runs(&self, n: u8) -> bool {
        self.only.is_empty() || self.only.contains(&n)
    }
}

/// How many scenarios there are.
const SCENARIOS: u8 = 8;

/// Posts the benchmark database holds (tests/bench/setup.sql).
pub const POSTS: u64 = 100_000;
/// Concurrency of the hot-post burst and the reads.
const BURST: u32 = 64;
pub const READERS: u32 = 16;

/// Post n's id, as `bench_post(n)` computes it in SQL.
pub fn post_id(n: u64) -> String {
    format!("00000000-0000-7000-8000-{n:012x}")
}

pub async fn run_all(stack: &mut Stack, sizes: &Sizes, out: &Path) -> anyhow::Result<Report> {
    let tokens = out.join("tokens.txt");
    let keys = tally_api::auth::TokenKeys::hs256(JWT_SECRET.as_bytes());
    let mut lines = String::new();
    for user in 0..sizes.users {
        let token = keys
            .issue(&format!("bench-user-{user}"), Duration::from_secs(6 * 3600))
            .context("signing a bench token")?;
        lines.push_str(&token);
        lines.push('\n');
    }
    std::fs::write(&tokens, lines)?;
    let posts = out.join("posts.txt");
    let ids: Vec<String> = (1..=POSTS).map(post_id).collect();
    std::fs::write(&posts, ids.join("\n"))?;

    let mut report = Report::default();
    let load = Load {
        sizes,
        out,
        tokens,
        posts,
    };
    // Scenario order matters (each leaves the database and the stream as the next expects):
    // it stays the same whichever ones run.
    let mut write_rate = None;
    if sizes.runs(1) {
        write_rate = Some(write_path(stack, &load, &mut report).await?);
        progress("write path: Postgres round trips per like");
        let round_trips = round_trips::per_like(stack, &ids).await?;
        report.note(format!(
            "write path: {round_trips:.2} Postgres round trips per like as the api sends it \
             (likes one at a time through a counting proxy, after a warm-up); 8 before issue 15 \
             (BEGIN, three statements each prepared anew, COMMIT: strace of commit 780709e)"
        ));
    }
    if sizes.runs(2) {
        hot_post(stack, &load, &mut report).await?;
    }
    if sizes.runs(3) {
        let relay_rate = relay_backlog(stack, sizes, &mut report).await?;
        if sizes.runs(4) {
            updater_backlog(stack, sizes, relay_rate, &mut report).await?;
        }
    }
    if let Some(write_rate) = write_rate.filter(|_| sizes.runs(5)) {
        end_to_end(stack, &load, write_rate, &mut report).await?;
    }
    if sizes.runs(6) {
        crate::feed::feed_reads(stack, &load, &mut report).await?;
    }
    if sizes.runs(7) {
        // The api at its maximum write rate for three load runs' length.
        let mut wrk = load.likes(stack, BURST, false, 0);
        wrk.duration = 3 * sizes.duration;
        sustained::sustained_load(stack, &wrk, out, &mut report).await?;
    }
    if let Some(write_rate) = write_rate.filter(|_| sizes.runs(8)) {
        crate::live::live_counts(stack, &load, write_rate, &mut report).await?;
    }
    Ok(report)
}

/// What the HTTP load runs share: their length and input files.
pub struct Load<'a> {
    pub sizes: &'a Sizes,
    pub out: &'a Path,
    tokens: PathBuf,
    posts: PathBuf,
}

impl Load<'_> {
    /// The bench users' bearer tokens, one per line.
    pub fn tokens(&self) -> &Path {
        &self.tokens
    }

    pub fn likes<'a>(
        &'a self,
        stack: &'a Stack,
        connections: u32,
        hot: bool,
        delay_ms: u64,
    ) -> Wrk<'a> {
        Wrk {
            base_url: &stack.api_url,
            mode: "like",
            connections,
            duration: self.sizes.duration,
            tokens: Some(&self.tokens),
            posts: Some(&self.posts),
            hot,
            delay_ms,
            path: "/",
        }
    }

    pub fn reads<'a>(
        &'a self,
        stack: &'a Stack,
        mode: &'static str,
        path: &'static str,
    ) -> Wrk<'a> {
        Wrk {
            base_url: &stack.api_url,
            mode,
            connections: READERS,
            duration: self.sizes.duration,
            tokens: None,
            posts: Some(&self.posts),
            hot: false,
            delay_ms: 0,
            path,
        }
    }
}

pub fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

pub fn check(name: &str, run: &Run) -> anyhow::Result<()> {
    if run.requests == 0 {
        bail!("{name}: no request completed");
    }
    if run.failures > 0 {
        progress(&format!(
            "{name}: {} of {} requests failed (counted in the figures as they are)",
            run.failures, run.requests
        ));
    }
    Ok(())
}

/// Scenario 1: likes per second through the api against pgbench running the same transaction.
/// Returns the api's rate at 16 clients, the base of the end-to-end scenario.
async fn write_path(stack: &Stack, ctx: &Load<'_>, report: &mut Report) -> anyhow::Result<f64> {
    let mut rate_16 = 0.0;
    for clients in [16, 64] {
        progress(&format!("write path: {clients} clients"));
        let api = ctx.likes(stack, clients, false, 0).run(ctx.out).await?;
        check("write path", &api)?;
        stack.drain().await?;
        let sql = pgbench(
            &stack.owner_url,
            "like.sql",
            clients,
            ctx.sizes.duration,
            &[("nposts", POSTS.to_string())],
            Protocol::Simple,
        )
        .await?;
        stack.drain().await?;
        report.throughput(
            &format!("1. write path, {clients} clients (likes/s)"),
            api.per_second,
            &format!("pgbench, same transaction, {clients} clients"),
            sql.per_second,
        );
        report.latencies(&format!("like, {clients} clients"), &api);
        if clients == 16 {
            rate_16 = api.per_second;
        }
    }
    Ok(rate_16)
}

/// Scenario 2, a hot post: every like on one post, against likes spread over 100,000 posts, and the
/// like transaction against the naive design's counter UPDATE on the hot row.
async fn hot_post(stack: &Stack, ctx: &Load<'_>, report: &mut Report) -> anyhow::Result<()> {
    progress(&format!("hot post: {BURST} clients on one post"));
    let hot = ctx.likes(stack, BURST, true, 0).run(ctx.out).await?;
    check("hot post", &hot)?;
    stack.drain().await?;
    progress(&format!("hot post: {BURST} clients over {POSTS} posts"));
    let spread = ctx.likes(stack, BURST, false, 0).run(ctx.out).await?;
    check("spread", &spread)?;
    stack.drain().await?;
    report.throughput(
        &format!("2. hot post via the api, {BURST} clients (likes/s)"),
        hot.per_second,
        &format!("the same load spread over {POSTS} posts"),
        spread.per_second,
    );
    report.latencies(&format!("like, hot post, {BURST} clients"), &hot);

    progress("hot post: tally's transaction against the naive counter UPDATE (pgbench)");
    let one = [("nposts", "1".to_owned())];
    let tally = pgbench(
        &stack.owner_url,
        "like.sql",
        BURST,
        ctx.sizes.duration,
        &one,
        Protocol::Simple,
    )
    .await?;
    stack.drain().await?;
    let naive = pgbench(
        &stack.owner_url,
        "like_naive.sql",
        BURST,
        ctx.sizes.duration,
        &one,
        Protocol::Simple,
    )
    .await?;
    report.throughput(
        &format!("2. hot post, tally's transaction in pgbench, {BURST} clients (tx/s)"),
        tally.per_second,
        "naive design: counter UPDATE in the like's transaction",
        naive.per_second,
    );
    // The whole design against the naive one: the api's hot-post likes (HTTP, JWT and all)
    // against the counter UPDATE run by pgbench with nothing in front of it.
    report.throughput(
        &format!("2. hot post via the api against the naive design, {BURST} clients (likes/s)"),
        hot.per_second,
        "naive design's counter UPDATE in pgbench (tx/s)",
        naive.per_second,
    );
    report.note(format!(
        "hot post: the naive design's mean transaction latency was {:.1} ms against tally's {:.1} ms",
        naive.mean_us / 1000.0,
        tally.mean_us / 1000.0
    ));
    Ok(())
}

/// Scenario 3: the relay draining a backlog into JetStream, against pg_recvlogical decoding the same
/// rows with pgoutput. The updater is stopped so the relay has the machine to itself.
async fn relay_backlog(
    stack: &mut Stack,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<f64> {
    let events = sizes.backlog;
    stack.drain().await?;
    stack.stop_relay().await?;
    stack.stop_updater().await?;
    stack
        .db
        .batch_execute(
            "SELECT pg_create_logical_replication_slot('tally_bench_baseline', 'pgoutput')",
        )
        .await
        .context("creating the baseline slot")?;
    progress(&format!(
        "relay: writing a backlog of {events} outbox rows, one transaction each"
    ));
    let since: chrono::DateTime<chrono::Utc> =
        stack.db.query_one("SELECT now()", &[]).await?.get(0);
    let started = Instant::now();
    // Separate statements: a multi-statement query is one implicit transaction, inside
    // which the procedure could not commit each row.
    for sql in [
        "SET synchronous_commit = off".to_owned(),
        format!("CALL bench_backlog({events}, {POSTS})"),
        "RESET synchronous_commit".to_owned(),
    ] {
        stack
            .db
            .batch_execute(&sql)
            .await
            .context("writing the backlog")?;
    }
    progress(&format!(
        "relay: backlog written in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let end_lsn: String = stack
        .db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let (before, _) = stack.stream_state().await?;

    progress("relay: draining the backlog into JetStream");
    let started = Instant::now();
    stack.start_relay().await?;
    let stages_before = Stages::read(&stack.relay_metrics).await?;
    loop {
        let (messages, _) = stack.stream_state().await?;
        if messages >= before + events {
            break;
        }
        if started.elapsed() > Duration::from_secs(1200) {
            bail!("the relay did not drain the backlog in 20 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relay_seconds = started.elapsed().as_secs_f64();
    let stages = Stages::read(&stack.relay_metrics).await?;
    report.note(stages.note(
        &stages_before,
        relay_seconds,
        events,
        stack.relay_peak_kib(),
    ));

    progress("relay: pg_recvlogical decoding the same rows");
    let started = Instant::now();
    let output = Command::new("pg_recvlogical")
        .args([
            "-d",
            &stack.owner_url,
            "--slot",
            "tally_bench_baseline",
            "--start",
        ])
        .args(["-E", &end_lsn, "-o", "proto_version=1"])
        .args([
            "-o",
            &format!("publication_names={}", tally_sql::PUBLICATION),
        ])
        .args(["-F", "0", "-f", "/dev/null", "--no-loop"])
        .output()
        .await
        .context("running pg_recvlogical")?;
    let baseline_seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "pg_recvlogical failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    stack
        .db
        .batch_execute("SELECT pg_drop_replication_slot('tally_bench_baseline')")
        .await?;
    let relay_rate = events as f64 / relay_seconds;
    let decode_rate = events as f64 / baseline_seconds;
    report.throughput(
        &format!("3. relay, {events}-event backlog into JetStream (events/s)"),
        relay_rate,
        "pg_recvlogical decoding the same rows (pgoutput)",
        decode_rate,
    );

    progress("relay: a plain async-nats publisher sending the same messages");
    let like = stack
        .nats
        .jetstream()
        .await
        .get_stream(tally_sql::STREAM)
        .await
        .context("getting the relay's stream")?
        .cached_info()
        .config
        .clone();
    let messages = broker::backlog_events(&stack.db, since).await?;
    let publish_rate = broker::publish_rate(&like, messages).await?;
    report.throughput(
        &format!("3. relay, {events}-event backlog, against the broker's own ceiling (events/s)"),
        relay_rate,
        "async-nats publisher, same messages and window, fresh stream",
        publish_rate,
    );
    report.note(format!(
        "relay backlog: {:.2}× the smaller of its two baselines ({:.0} events/s)",
        relay_rate / decode_rate.min(publish_rate),
        decode_rate.min(publish_rate)
    ));
    Ok(relay_rate)
}

/// Scenario 4: the updater applying the same backlog, against the relay's rate.
async fn updater_backlog(
    stack: &mut Stack,
    sizes: &Sizes,
    relay_rate: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let events = sizes.backlog;
    progress(&format!("updater: applying a backlog of {events} events"));
    let started = Instant::now();
    stack.start_updater().await?;
    loop {
        let (_, pending) = stack.stream_state().await?;
        if pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(1200) {
            bail!("the updater did not apply the backlog in 20 minutes ({pending} pending)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    report.throughput(
        &format!("4. updater, {events}-event backlog applied (events/s)"),
        events as f64 / seconds,
        "the relay's rate on the same backlog",
        relay_rate,
    );
    // A fresh process: its counters started at zero.
    let stages = Stages::read_updater(&stack.updater_metrics).await?;
    report.note(format!(
        "{}. Updater peak memory (VmHWM) after the drain: {:.0} MiB",
        stages.updater_note(&Stages::default(), seconds, events),
        stack.updater_peak_kib() as f64 / 1024.0
    ));
    Ok(())
}

/// Scenario 5: at half the measured maximum write rate: commit-to-visible latency against the write
/// request's own latency. Commit time is the outbox row's `created_at`, visible is the
/// inbox row's `processed_at` (written in the transaction that updates the count).
async fn end_to_end(
    stack: &Stack,
    ctx: &Load<'_>,
    max_rate: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let connections = 16_u32;
    let target = (max_rate / 2.0).max(1.0);
    let delay_ms = ((f64::from(connections) * 1000.0) / target)
        .round()
        .max(1.0) as u64;
    progress(&format!(
        "end to end: about {target:.0} likes/s ({connections} clients, {delay_ms} ms apart)"
    ));
    let since: chrono::DateTime<chrono::Utc> =
        stack.db.query_one("SELECT now()", &[]).await?.get(0);
    let jetstream = stack.nats.jetstream().await;
    let after = stored::last_sequence(&jetstream).await?;
    let run = ctx
        .likes(stack, connections, false, delay_ms)
        .run(ctx.out)
        .await?;
    check("end to end", &run)?;
    stack.drain().await?;
    let row = stack
        .db
        .query_one(
            "SELECT count(*), \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms), \
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_ms), \
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) \
             FROM (SELECT extract(epoch FROM i.processed_at - o.created_at) * 1000 AS lag_ms \
                   FROM outbox o JOIN inbox i USING (event_id) \
                   WHERE o.created_at >= $1 AND o.event_type = 'like.added') AS lags",
            &[&since],
        )
        .await
        .context("measuring commit-to-visible latency")?;
    let measured: i64 = row.get(0);
    if measured == 0 {
        bail!("end to end: no event of the run was applied");
    }
    for (index, percentile) in [(1, 50.0), (2, 95.0), (3, 99.0)] {
        let visible: f64 = row.get(index);
        report.latency(
            &format!(
                "5. end to end at {:.0} likes/s: commit → count visible, p{percentile} (ms)",
                run.per_second
            ),
            visible,
            "the like request itself",
            run.latency_ms(percentile),
        );
    }
    if !stored::tracks_commit_times(&stack.db).await? {
        report.note(
            "commit → stored counts from the outbox row's created_at (its transaction's start): \
             track_commit_timestamp is off in this cluster"
                .to_owned(),
        );
    }
    let times = stored::stored_times(&jetstream, after).await?;
    let lags = stored::commit_to_stored_ms(&stack.db, since, &times).await?;
    if lags.is_empty() {
        bail!("end to end: no event of the run was found in the stream");
    }
    for (index, percentile) in [(1, 50.0), (3, 99.0)] {
        let visible: f64 = row.get(index);
        report.latency(
            &format!(
                "5. end to end at {:.0} likes/s: commit → stored in the stream (relay alone), p{percentile} (ms)",
                run.per_second
            ),
            stored::percentile(&lags, percentile),
            "commit → count visible",
            visible,
        );
    }
    report.latencies("like at half the maximum rate", &run);
    Ok(())
}
