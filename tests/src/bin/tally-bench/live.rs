//! Scenario 8, live counts: 1,000 open `GET /v1/live` streams watching one hot post while
//! likes arrive at half the maximum write rate. Each like's commit → the first event (on a
//! sample of the streams) whose counts include it, next to the same likes' commit → count
//! visible; the events each stream got per second (the coalescing); the api's memory and CPU
//! with the streams open.
//!
//! A count event carries `post_counts.updated_at`, the updater transaction's `now()`, which
//! is also the `processed_at` of every inbox row that transaction wrote: so an event
//! includes a like exactly when its `updated_at` is at or after the like's `processed_at`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tally_tests::sse::SseReader;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::load::Wrk;
use crate::report::Report;
use crate::scenarios::{Load, check, progress};
use crate::stack::Stack;

/// Streams open at once.
const STREAMS: usize = 1000;
/// Streams whose every event is kept for the latency (the others are only counted).
const SAMPLED: usize = 100;
/// The api's default `TALLY_LIVE_MAX_PER_SEC`.
const MAX_PER_SEC: f64 = 4.0;

/// (counts' updated_at, when the event was received) of one sampled stream, in order.
type Received = Vec<(DateTime<Utc>, DateTime<Utc>)>;

pub async fn live_counts(
    stack: &Stack,
    ctx: &Load<'_>,
    max_rate: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let post = crate::scenarios::post_id(crate::scenarios::POSTS);
    let posts = ctx.out.join("live-post.txt");
    std::fs::write(&posts, &post)?;
    progress(&format!(
        "live counts: opening {STREAMS} streams on post {post}"
    ));
    let stop = CancellationToken::new();
    let events = Arc::new(AtomicU64::new(0));
    let pid = stack.api_pid().context("the api is not running")?;
    let sampler = rss_sampler(pid, stop.clone());
    let mut streams = open_streams(&stack.api_url, &post, &stop, &events).await?;
    let (cpu_before, started) = (cpu_ticks(pid), Instant::now());
    let since: DateTime<Utc> = stack.db.query_one("SELECT now()", &[]).await?.get(0);
    let events_before = events.load(Ordering::Relaxed);

    let connections = 16_u32;
    let target = (max_rate / 2.0).max(1.0);
    let delay_ms = ((f64::from(connections) * 1000.0) / target)
        .round()
        .max(1.0) as u64;
    progress(&format!(
        "live counts: about {target:.0} likes/s on the watched post"
    ));
    let wrk = Wrk {
        posts: Some(&posts),
        hot: true,
        ..ctx.likes(stack, connections, true, delay_ms)
    };
    let run = wrk.run(ctx.out).await?;
    check("live counts", &run)?;
    stack.drain().await?;
    // The last commit's event, coalesced, may wait one slot (250 ms) more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / CLOCK_TICKS / seconds;
    let events_during = events.load(Ordering::Relaxed) - events_before;
    stop.cancel();
    let peak_rss_kib = sampler.await.unwrap_or(0);
    let mut sampled = Vec::new();
    while let Some(joined) = streams.join_next().await {
        if let Some(received) = joined?? {
            sampled.push(received);
        }
    }

    let likes = like_times(stack, since).await?;
    if likes.is_empty() {
        bail!("live counts: no like of the run was applied");
    }
    let figures = Figures {
        likes_per_second: run.per_second,
        events_per_stream_second: events_during as f64 / STREAMS as f64 / seconds,
        peak_rss_kib,
        cpu,
        seconds,
    };
    record(report, &figures, &likes, &sampled);
    report.latencies("like while 1,000 streams watch the post", &run);
    Ok(())
}

/// What the run measured besides the latencies.
struct Figures {
    likes_per_second: f64,
    events_per_stream_second: f64,
    peak_rss_kib: u64,
    /// Cores' worth of CPU the api used (1.0: one core).
    cpu: f64,
    seconds: f64,
}

/// The scenario's rows and note.
fn record(
    report: &mut Report,
    figures: &Figures,
    likes: &[(DateTime<Utc>, DateTime<Utc>)],
    sampled: &[Received],
) {
    let received = event_latencies_ms(likes, sampled);
    let visible: Vec<f64> = likes.iter().map(|(c, p)| ms(*p - *c)).collect();
    let label = format!(
        "8. live counts, {STREAMS} streams on one post at {:.0} likes/s",
        figures.likes_per_second
    );
    for percentile in [50.0, 99.0] {
        report.latency(
            &format!("{label}: commit → event received, p{percentile} (ms)"),
            percentile_of(&received, percentile),
            "commit → count visible, the same likes",
            percentile_of(&visible, percentile),
        );
    }
    report.throughput(
        &format!("{label}: events per stream per second"),
        figures.events_per_stream_second,
        "TALLY_LIVE_MAX_PER_SEC",
        MAX_PER_SEC,
    );
    report.note(format!(
        "live counts: with {STREAMS} streams open the api peaked at {:.0} MiB resident \
         (target < 128 MiB) and used {:.0}% of one core over {:.1} s; event latency \
         over {} likes × {} sampled streams (target: p99 ≤ scenario 5's commit → count \
         visible p99 + 300 ms)",
        figures.peak_rss_kib as f64 / 1024.0,
        figures.cpu * 100.0,
        figures.seconds,
        likes.len(),
        sampled.len()
    ));
}

/// Opens the streams, each read by its own task until `stop`; returns once every stream
/// has sent its first counts. Sampled streams return what they received.
async fn open_streams(
    api_url: &str,
    post: &str,
    stop: &CancellationToken,
    events: &Arc<AtomicU64>,
) -> anyhow::Result<JoinSet<anyhow::Result<Option<Received>>>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("{api_url}/v1/live?ids={post}");
    let mut tasks = JoinSet::new();
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    for index in 0..STREAMS {
        let (http, url, stop, events, opened) = (
            http.clone(),
            url.clone(),
            stop.clone(),
            events.clone(),
            opened.clone(),
        );
        tasks.spawn(async move {
            let response = http.get(&url).send().await?.error_for_status()?;
            let mut stream = SseReader::new(response);
            let first = stream.next_event(Duration::from_secs(60)).await;
            opened.add_permits(1);
            first.context("a stream sent no first event")?;
            read_until(stream, &stop, &events, index < SAMPLED).await
        });
    }
    let all = opened.acquire_many(STREAMS as u32);
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .context("the streams did not all open within 120 s")??
        .forget();
    Ok(tasks)
}

/// Reads `counts` events until `stop`, counting them; keeps them when `keep`.
async fn read_until(
    mut stream: SseReader,
    stop: &CancellationToken,
    events: &AtomicU64,
    keep: bool,
) -> anyhow::Result<Option<Received>> {
    let mut received = Vec::new();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => break,
            next = stream.next_event(Duration::from_secs(3600)) => next,
        };
        let Some((event, _, data)) = next else {
            bail!("a stream ended while the bench watched it");
        };
        if event != "counts" {
            continue;
        }
        events.fetch_add(1, Ordering::Relaxed);
        if keep {
            let updated_at = data["updated_at"]
                .as_str()
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .context("a counts event without updated_at")?;
            received.push((updated_at.with_timezone(&Utc), Utc::now()));
        }
    }
    Ok(keep.then_some(received))
}

/// (commit, counted) of each like applied since `since`, in the order counted.
async fn like_times(
    stack: &Stack,
    since: DateTime<Utc>,
) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let rows = stack
        .db
        .query(
            "SELECT o.created_at, i.processed_at FROM outbox o JOIN inbox i USING (event_id) \
             WHERE o.created_at >= $1 AND o.event_type = 'like.added' ORDER BY i.processed_at",
            &[&since],
        )
        .await
        .context("reading the run's like times")?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// For every like and sampled stream: commit → the first event received that includes it.
fn event_latencies_ms(likes: &[(DateTime<Utc>, DateTime<Utc>)], sampled: &[Received]) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(likes.len() * sampled.len());
    for received in sampled {
        let mut next = 0;
        for (commit, counted) in likes {
            while next < received.len() && received[next].0 < *counted {
                next += 1;
            }
            if let Some((_, at)) = received.get(next) {
                latencies.push(ms(*at - *commit));
            }
        }
    }
    latencies
}

fn ms(delta: chrono::TimeDelta) -> f64 {
    delta.num_microseconds().unwrap_or(0) as f64 / 1000.0
}

fn percentile_of(values: &[f64], percentile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((percentile / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Linux's USER_HZ: /proc/<pid>/stat counts CPU time in hundredths of a second.
const CLOCK_TICKS: f64 = 100.0;

/// The process's user + system CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces), from the closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 counted from 0 after it.
    field(11) + field(12)
}

/// Samples the process's resident set every 100 ms until `stop`; the largest seen (KiB).
fn rss_sampler(pid: u32, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.is_cancelled() {
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmRSS:"))
                        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0);
            peak = peak.max(rss);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}
