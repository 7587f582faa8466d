//! `tally-updater reconcile`: compares `post_counts` with the source tables (`likes`, live
//! `comments`) and, with `--fix`, repairs the difference, safely while the pipeline runs.
//!
//! While events are in flight the source tables are ahead of the counts by exactly the
//! events not yet applied: outbox rows (written in the same transaction as the change) that
//! are neither in the inbox nor dead-lettered. So a post is in drift when
//! `counted != actual - in_flight`, and is repaired to `actual - in_flight`, not to `actual`:
//! the updater will still add the in-flight deltas, and each must count exactly once.
//!
//! The check runs in two passes. A cheap chunked scan of all posts compares counted with
//! actual; the few posts that differ (in drift, or with events in flight) are then measured
//! precisely, in one statement (one snapshot) that also reads the outbox. `--fix` locks the
//! `post_counts` rows first (in post-id order, as the updaters do), so no updater
//! transaction can commit on those posts between the measurement and the repair: one blocked
//! on the lock has its inbox rows uncommitted, so its events are measured as in flight and
//! it adds them after the repair.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_postgres::error::SqlState;
use tracing::instrument;
use uuid::Uuid;

/// Posts read per statement of the cheap pass.
const SCAN_CHUNK: i64 = 5_000;
/// Posts measured (and locked, with `--fix`) per transaction of the precise pass.
const FIX_CHUNK: usize = 500;
/// Tables smaller than this finish before a progress bar would help.
const PROGRESS_FROM: u64 = 20_000;

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct Options {
    /// One post, or every post.
    pub post: Option<Uuid>,
    /// Repair the drift found.
    pub fix: bool,
    /// The updaters' inbox retention: younger unapplied events are in flight.
    pub inbox_retention: Duration,
    /// Draw a progress bar (on stderr, when it is a terminal) for large tables.
    pub progress: bool,
}

/// One post whose count differs from the source tables by more than the events in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub post_id: Uuid,
    pub counted_likes: i64,
    pub actual_likes: i64,
    pub in_flight_likes: i64,
    pub counted_comments: i64,
    pub actual_comments: i64,
    pub in_flight_comments: i64,
}

impl Drift {
    /// The like count once every in-flight event is applied: what `--fix` writes.
    pub fn expected_likes(&self) -> i64 {
        self.actual_likes - self.in_flight_likes
    }
    pub fn expected_comments(&self) -> i64 {
        self.actual_comments - self.in_flight_comments
    }
    fn drifts(&self) -> bool {
        self.counted_likes != self.expected_likes()
            || self.counted_comments != self.expected_comments()
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  likes {} (should be {}: {} in likes, {} in flight)  comments {} (should be {}: {} live, {} in flight)",
            self.post_id,
            self.counted_likes,
            self.expected_likes(),
            self.actual_likes,
            self.in_flight_likes,
            self.counted_comments,
            self.expected_comments(),
            self.actual_comments,
            self.in_flight_comments
        )
    }
}

/// What a reconcile run found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// Posts compared.
    pub checked: u64,
    /// Posts in drift (before any repair).
    pub drift: Vec<Drift>,
    /// Posts repaired (`--fix`).
    pub fixed: u64,
}

/// The role whose grants reconcile needs (the updater's own).
pub const NEEDED_ROLE: &str = "tally_updater";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading or repairing the counts failed")]
    Database(#[from] tokio_postgres::Error),
    /// `--post` named a post that is not in `posts` (never created, or a typo).
    #[error("there is no post {0}")]
    NoSuchPost(Uuid),
    /// The connection's role lacks grants the run needs.
    #[error(
        "role {role} may not {missing}; reconcile{fix} needs the grants of {NEEDED_ROLE}: \
         run it as {NEEDED_ROLE} (the updater's DATABASE_URL) or as an operator's role that \
         is a member of {NEEDED_ROLE}",
        fix = if *.fix { " --fix" } else { "" }
    )]
    PermissionDenied {
        role: String,
        /// What it may not do, e.g. `UPDATE post_counts, SELECT outbox`.
        missing: String,
        fix: bool,
    },
}

/// What a run reads and, with `--fix`, writes.
const READS: [&str; 7] = [
    "posts",
    "likes",
    "comments",
    "post_counts",
    "outbox",
    "inbox",
    "dead_letters",
];
const WRITES: [(&str, &str); 2] = [("INSERT", "post_counts"), ("UPDATE", "post_counts")];

/// Checks up front that the connection's role holds every grant the run needs, so a role
/// without them is told which role to use instead of failing midway on one table.
async fn check_grants(
    client: &tokio_postgres::Client,
    options: &Options,
) -> Result<(), ReconcileError> {
    let mut needed: Vec<(&str, &str)> = READS.iter().map(|table| ("SELECT", *table)).collect();
    if options.fix {
        needed.extend(WRITES);
    }
    let (privileges, tables): (Vec<&str>, Vec<&str>) = needed.into_iter().unzip();
    let rows = client
        .query(
            "SELECT current_user::text, n.privilege || ' ' || n.relation
             FROM unnest($1::text[], $2::text[]) AS n(privilege, relation)
             WHERE NOT has_table_privilege(n.relation, n.privilege)",
            &[&privileges, &tables],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    Err(ReconcileError::PermissionDenied {
        role: first.get(0),
        missing: rows
            .iter()
            .map(|row| row.get::<_, String>(1))
            .collect::<Vec<_>>()
            .join(", "),
        fix: options.fix,
    })
}

/// Runs the check (and repair) on `client`, which must be allowed what the updater role is.
#[instrument(skip(client))]
pub async fn reconcile(
    client: &mut tokio_postgres::Client,
    options: &Options,
) -> Result<Report, ReconcileError> {
    check_grants(client, options).await?;
    let mut report = Report::default();
    let candidates = match options.post {
        Some(post) => {
            let exists = client
                .query_opt("SELECT 1 FROM posts WHERE post_id = $1", &[&post])
                .await?;
            if exists.is_none() {
                return Err(ReconcileError::NoSuchPost(post));
            }
            report.checked = 1;
            vec![post]
        }
        None => scan(client, options, &mut report).await?,
    };
    for chunk in candidates.chunks(FIX_CHUNK) {
        // Should a transaction still lose a deadlock or serialization check, it was rolled
        // back whole, so retrying is safe.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match measure(client, chunk, options).await {
                Ok((drift, fixed)) => {
                    report.drift.extend(drift);
                    report.fixed += fixed;
                    break;
                }
                Err(err)
                    if attempt < 5
                        && matches!(
                            err.code(),
                            Some(&SqlState::T_R_DEADLOCK_DETECTED)
                                | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                        ) =>
                {
                    tracing::warn!(error = %err, "reconcile chunk retried");
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(report)
}

/// The cheap pass: every post whose counted value differs from the source tables.
async fn scan(
    client: &tokio_postgres::Client,
    options: &Options,
    report: &mut Report,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let total: i64 = client
        .query_one("SELECT count(*) FROM posts", &[])
        .await?
        .get(0);
    let bar = if options.progress && total as u64 >= PROGRESS_FROM {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} reconciling {pos}/{len} posts [{bar:40}] {percent}% eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut candidates = Vec::new();
    let mut after = Uuid::nil();
    loop {
        let rows = client
            .query(
                "SELECT p.post_id,
                        coalesce(c.likes, 0) <> (SELECT count(*) FROM likes l
                                                 WHERE l.post_id = p.post_id)
                     OR coalesce(c.comments, 0) <> (SELECT count(*) FROM comments m
                                                    WHERE m.post_id = p.post_id
                                                      AND m.deleted_at IS NULL)
                 FROM (SELECT post_id FROM posts WHERE post_id > $1
                       ORDER BY post_id LIMIT $2) p
                 LEFT JOIN post_counts c USING (post_id)
                 ORDER BY p.post_id",
                &[&after, &SCAN_CHUNK],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        report.checked += rows.len() as u64;
        bar.inc(rows.len() as u64);
        candidates.extend(
            rows.iter()
                .filter(|row| row.get::<_, bool>(1))
                .map(|row| row.get::<_, Uuid>(0)),
        );
        if (rows.len() as i64) < SCAN_CHUNK {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(candidates)
}

/// The precise pass over `posts` in one transaction: measures in one snapshot, and with
/// `fix` repairs under the rows' locks. Returns the drift found and how many were fixed.
async fn measure(
    client: &mut tokio_postgres::Client,
    posts: &[Uuid],
    options: &Options,
) -> Result<(Vec<Drift>, u64), tokio_postgres::Error> {
    let mut posts = posts.to_vec();
    posts.sort_unstable();
    let txn = client.transaction().await?;
    if options.fix {
        // One ordered pass that creates missing rows and locks existing ones, in the order
        // the updaters lock them.
        txn.execute(
            "INSERT INTO post_counts AS c (post_id)
             SELECT p.post_id FROM posts p WHERE p.post_id = ANY($1) ORDER BY 1
             ON CONFLICT (post_id) DO UPDATE SET likes = c.likes",
            &[&posts],
        )
        .await?;
    }
    let rows = txn
        .query(
            "WITH ids AS (SELECT unnest($1::uuid[]) AS post_id),
             in_flight AS (
                 SELECT o.post_id,
                        sum(CASE o.event_type WHEN 'like.added' THEN 1
                                              WHEN 'like.removed' THEN -1 ELSE 0 END) AS likes,
                        sum(CASE o.event_type WHEN 'comment.added' THEN 1
                                              WHEN 'comment.removed' THEN -1 ELSE 0 END)
                            AS comments
                 FROM outbox o
                 WHERE o.post_id = ANY($1)
                   AND o.created_at > now() - make_interval(secs => $2)
                   AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.event_id)
                   AND NOT EXISTS (SELECT 1 FROM dead_letters d
                                   WHERE d.event_id = o.event_id::text)
                 GROUP BY o.post_id)
             SELECT ids.post_id,
                    coalesce(c.likes, 0),
                    (SELECT count(*) FROM likes l WHERE l.post_id = ids.post_id),
                    coalesce(f.likes, 0)::int8,
                    coalesce(c.comments, 0),
                    (SELECT count(*) FROM comments m
                     WHERE m.post_id = ids.post_id AND m.deleted_at IS NULL),
                    coalesce(f.comments, 0)::int8
             FROM ids
             JOIN posts USING (post_id)
             LEFT JOIN post_counts c USING (post_id)
             LEFT JOIN in_flight f USING (post_id)
             ORDER BY 1",
            &[&posts, &options.inbox_retention.as_secs_f64()],
        )
        .await?;
    let drift: Vec<Drift> = rows
        .iter()
        .map(|row| Drift {
            post_id: row.get(0),
            counted_likes: row.get(1),
            actual_likes: row.get(2),
            in_flight_likes: row.get(3),
            counted_comments: row.get(4),
            actual_comments: row.get(5),
            in_flight_comments: row.get(6),
        })
        .filter(Drift::drifts)
        .collect();
    let mut fixed = 0;
    if options.fix {
        for d in &drift {
            if d.expected_likes() < 0 || d.expected_comments() < 0 {
                tracing::error!(post_id = %d.post_id, drift = %d,
                    "not repaired: the in-flight events would take the count below zero");
                continue;
            }
            txn.execute(
                // updated_at only moves forward, as the updater's own writes keep it (see batch.rs).
                "UPDATE post_counts SET likes = $2, comments = $3,
                     updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
                 WHERE post_id = $1",
                &[&d.post_id, &d.expected_likes(), &d.expected_comments()],
            )
            .await?;
            fixed += 1;
        }
    }
    txn.commit().await?;
    Ok((drift, fixed))
}
