//! Scenario 6, the feed read of 50 ids: warm (the same page again and again, anonymous and
//! signed in) against `GET /healthz`; cold (an api with its cache off, random pages) against
//! pgbench running the feed's own query at the same concurrency; and how soon a like shows
//! in a warm read (commit → visible) against the pipeline's own lag for the same likes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tally_api::store::FEED_QUERY;
use uuid::Uuid;

use crate::load::{Protocol, Run, Wrk, pgbench};
use crate::report::Report;
use crate::scenarios::{Load, POSTS, READERS, check, post_id, progress};
use crate::stack::{JWT_SECRET, Stack};
use crate::stored::percentile;

/// Ids per feed read (wrk.lua's feed modes read 50 too).
const PAGE: u64 = 50;

/// Distinct pages in the pgbench baseline's script.
const PGBENCH_PAGES: u64 = 64;

/// Longest one like may take to show in the feed before the run gives up on it.
const SHOW_WITHIN: Duration = Duration::from_secs(10);

pub async fn feed_reads(stack: &Stack, ctx: &Load<'_>, report: &mut Report) -> anyhow::Result<()> {
    progress("feed reads: /healthz baseline");
    let health = ctx.reads(stack, "get", "/healthz").run(ctx.out).await?;
    check("healthz", &health)?;
    let warm = ctx.reads(stack, "feed-warm", "/");
    let signed_in = Wrk {
        tokens: Some(ctx.tokens()),
        ..warm.clone()
    };
    for (wrk, label) in [(warm, "cache warm"), (signed_in, "cache warm, signed in")] {
        progress(&format!("feed reads: 50 ids, {label}"));
        if let Some(feed) = feed_run(&wrk, ctx, label, report).await? {
            report.throughput(
                &format!("6. feed read, 50 ids, {label}, {READERS} clients (requests/s)"),
                feed.per_second,
                "GET /healthz",
                health.per_second,
            );
        }
    }
    cold(stack, ctx, report).await?;
    freshness(stack, ctx, report).await?;
    report.latencies("GET /healthz", &health);
    Ok(())
}

/// One wrk run of feed reads; None (and a note) when requests failed, since a rate of error
/// answers says nothing about the feed read.
async fn feed_run(
    wrk: &Wrk<'_>,
    ctx: &Load<'_>,
    label: &str,
    report: &mut Report,
) -> anyhow::Result<Option<Run>> {
    let feed = wrk.run(ctx.out).await?;
    check(label, &feed)?;
    if feed.failures > 0 {
        report.note(format!(
            "feed read, {label}: {} of {} requests failed; no figure reported",
            feed.failures, feed.requests
        ));
        return Ok(None);
    }
    report.latencies(&format!("feed read, {label}"), &feed);
    Ok(Some(feed))
}

/// Random pages through an api whose cache is off (`TALLY_COUNTS_CACHE_TTL_MS=0`): every read
/// is the feed's query and what the api adds to it. (Random pages through the bench's own api
/// would be warm after a few seconds: its cache keeps every post read.)
async fn cold(stack: &Stack, ctx: &Load<'_>, report: &mut Report) -> anyhow::Result<()> {
    progress("feed reads: pgbench, the feed's query for 50 random posts");
    let script = pgbench_script(ctx.out)?;
    let sql = pgbench(
        &stack.owner_url,
        &script.to_string_lossy(),
        READERS,
        ctx.sizes.duration,
        &[],
        Protocol::Prepared,
    )
    .await?;
    progress("feed reads: 50 ids, cache cold (an api with its cache off)");
    let uncached = stack
        .spawn_api_with(
            "tally-api-uncached",
            &[("TALLY_COUNTS_CACHE_TTL_MS", "0".to_owned())],
        )
        .await?;
    let wrk = Wrk {
        base_url: &uncached.url,
        ..ctx.reads(stack, "feed-cold", "/")
    };
    if let Some(feed) = feed_run(&wrk, ctx, "cache cold", report).await? {
        report.throughput(
            &format!("6. feed read, 50 ids, cache cold, {READERS} clients (requests/s)"),
            feed.per_second,
            &format!("pgbench, the feed's query for 50 random ids, {READERS} clients"),
            sql.per_second,
        );
    }
    Ok(())
}

/// The pgbench baseline's script (written to `out/feed.sql`): the api's own feed query, one
/// statement per transaction, for one of [`PGBENCH_PAGES`] pages of 50 random posts chosen
/// at random. The ids are literals, as the api sends them ready-made in one parameter:
/// computing them in SQL (`bench_post(n)` fifty times) would slow the baseline by half.
fn pgbench_script(out: &Path) -> anyhow::Result<PathBuf> {
    let mut script = format!(
        "-- Written by tally-bench (scenario 6): the feed's query for a random page.\n\
         \\set page random(1, {PGBENCH_PAGES})\n"
    );
    for page in 1..=PGBENCH_PAGES {
        let ids: Vec<String> = (0..PAGE)
            .map(|_| post_id(fastrand::u64(1..=POSTS)))
            .collect();
        let query = FEED_QUERY.replace("ANY($1)", &format!("ANY('{{{}}}'::uuid[])", ids.join(",")));
        let branch = if page == 1 { "\\if" } else { "\\elif" };
        script.push_str(&format!("{branch} :page = {page}\n{query};\n"));
    }
    script.push_str("\\endif\n");
    let path = out.join("feed.sql");
    std::fs::write(&path, script)?;
    Ok(path)
}

/// Likes on the warm page's posts, one at a time, each followed by warm feed reads until it
/// shows: commit → visible, next to commit → counted for the same likes.
async fn freshness(stack: &Stack, ctx: &Load<'_>, report: &mut Report) -> anyhow::Result<()> {
    let samples = ctx.sizes.duration.as_secs() * 10;
    progress(&format!(
        "feed reads: {samples} likes, each until a warm feed read shows it"
    ));
    let ids: Vec<String> = (1..=PAGE).map(post_id).collect();
    let page = format!("{}/v1/posts?ids={}", stack.api_url, ids.join(","));
    let http = reqwest::Client::new();
    let keys = tally_api::auth::TokenKeys::hs256(JWT_SECRET.as_bytes());
    let run = Uuid::now_v7().simple().to_string();
    let mut seen: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for sample in 0..samples {
        let post = &ids[(sample % PAGE) as usize];
        let before = likes_in(&http, &page, post).await?;
        let token = keys.issue(
            &format!("bench-fresh-{run}-{sample}"),
            Duration::from_secs(3600),
        )?;
        let liked: Value = http
            .post(format!("{}/v1/likes", stack.api_url))
            .bearer_auth(token)
            .json(&serde_json::json!({ "post_id": post }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let event_id: Uuid = liked["event_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .context("the like answered no event_id")?;
        let started = Instant::now();
        while likes_in(&http, &page, post).await? <= before {
            if started.elapsed() > SHOW_WITHIN {
                bail!(
                    "freshness: a like on {post} did not show in the feed within {SHOW_WITHIN:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen.insert(event_id, Utc::now());
    }
    record_freshness(stack, &seen, report).await
}

/// The likes of `post` in a read of `page`.
async fn likes_in(http: &reqwest::Client, page: &str, post: &str) -> anyhow::Result<i64> {
    let feed: Value = http
        .get(page)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    feed["posts"]
        .as_array()
        .and_then(|posts| posts.iter().find(|p| p["id"] == post))
        .and_then(|p| p["likes"].as_i64())
        .with_context(|| format!("the feed read has no post {post}"))
}

/// The freshness rows: each like's commit (as scenario 5 takes it) → seen in the feed, and
/// → counted (its inbox row's `processed_at`).
async fn record_freshness(
    stack: &Stack,
    seen: &HashMap<Uuid, DateTime<Utc>>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let event_ids: Vec<Uuid> = seen.keys().copied().collect();
    let committed = crate::stored::commit_time(&stack.db).await?;
    let rows = stack
        .db
        .query(
            &format!(
                "SELECT event_id, committed, processed_at FROM inbox JOIN \
                 (SELECT event_id, {committed} AS committed FROM outbox \
                  WHERE event_id = ANY($1)) AS o USING (event_id)"
            ),
            &[&event_ids],
        )
        .await
        .context("reading the likes' commit and count times")?;
    let ms = |delta: chrono::TimeDelta| delta.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let (mut visible, mut counted) = (Vec::new(), Vec::new());
    for row in &rows {
        let (event_id, commit, processed): (Uuid, DateTime<Utc>, DateTime<Utc>) =
            (row.get(0), row.get(1), row.get(2));
        if let Some(at) = seen.get(&event_id) {
            visible.push(ms(*at - commit));
            counted.push(ms(processed - commit));
        }
    }
    visible.sort_by(f64::total_cmp);
    counted.sort_by(f64::total_cmp);
    for p in [50.0, 99.0] {
        report.latency(
            &format!("6. feed read, cache warm: commit → visible in the feed, p{p} (ms)"),
            percentile(&visible, p),
            "commit → count visible, the same likes",
            percentile(&counted, p),
        );
    }
    report.note(format!(
        "feed freshness: {} likes, one at a time, each polled with warm feed reads every \
         millisecond until it showed (target: p99 ≤ commit → count visible p99 + 100 ms; the \
         poll adds up to about a millisecond)",
        visible.len()
    ));
    Ok(())
}
