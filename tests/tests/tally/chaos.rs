//! Chaos: a mixed workload (likes, unlikes, toggles, comments and deletes over 1,000 posts,
//! some of them hot) while the api, relay, updater, nats-server and Postgres are killed with
//! SIGKILL at random moments and started again. Afterwards every write that got a 2xx is in
//! the source tables, the stream holds each outbox event exactly once, and reconcile reports
//! no drift. The figures go to stderr and to `target/tmp/chaos-summary.txt`.
//!
//! `./dev test` runs a short round (`TALLY_CHAOS_SECS`, 30 s by default); `./dev chaos` a
//! long one. The outage tests take NATS away for a minute under load (the api keeps
//! answering, the backlog drains afterwards) and Postgres away (503 with Retry-After, then
//! recovery without restarting anything).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tally_tests::cluster::{NatsServer, PrivatePostgres, free_port};
use tally_tests::process::{ServiceProcess, binary};
use tally_tests::{TestApp, connect};
use tokio_util::sync::CancellationToken;

const POSTS: usize = 1_000;
/// The first posts take a third of the traffic.
const HOT_POSTS: usize = 10;
const WORKERS: usize = 6;
const USERS_PER_WORKER: usize = 40;
const SECRET: &str = "tally-chaos-secret-tally-chaos-secret-0123456789";
const CONSUMER: &str = "tally-updater";
/// How long the system may take to catch up once the killing stops, on a loaded machine.
const CONVERGE: Duration = Duration::from_secs(180);

fn run_length() -> Duration {
    std::env::var("TALLY_CHAOS_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Component {
    Api,
    Relay,
    Updater,
    Nats,
    Postgres,
}

const COMPONENTS: [Component; 5] = [
    Component::Api,
    Component::Relay,
    Component::Updater,
    Component::Nats,
    Component::Postgres,
];

/// The whole of tally as separate processes on a private Postgres cluster.
struct System {
    pg: PrivatePostgres,
    db_name: String,
    nats: NatsServer,
    api_addr: String,
    api: ServiceProcess,
    relay: ServiceProcess,
    updater: ServiceProcess,
}

impl System {
    async fn start() -> System {
        // The test clusters trade durability for speed (synchronous_commit = off); a crash
        // test needs every acknowledged commit's WAL handed to the kernel before the answer.
        let pg = tokio::task::spawn_blocking(|| PrivatePostgres::start("-c synchronous_commit=on"))
            .await
            .expect("starting a private cluster");
        let (db_name, db) = pg.cluster().fresh_database().await;
        let posts = (1..=POSTS).map(post_id).collect::<Vec<_>>();
        db.execute(
            "INSERT INTO posts (post_id, author_id) SELECT unnest($1::uuid[]), 'chaos-author'",
            &[&posts],
        )
        .await
        .expect("creating the posts");
        let nats = NatsServer::start().await;
        let api_addr = format!("127.0.0.1:{}", free_port());
        let mut system = System {
            api: ServiceProcess::spawn("tally-api", &[]),
            relay: ServiceProcess::spawn("tally-relay", &[]),
            updater: ServiceProcess::spawn("tally-updater", &[]),
            pg,
            db_name,
            nats,
            api_addr,
        };
        // The placeholders above exit at once for want of configuration.
        for component in [Component::Api, Component::Relay, Component::Updater] {
            system.restart(component).await;
        }
        let health = format!("http://{}/healthz", system.api_addr);
        let up = TestApp::eventually(Duration::from_secs(30), || async {
            let answer = reqwest::get(&health).await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
        assert!(
            up.is_some(),
            "the api did not come up\n{}",
            system.log_tails()
        );
        system
    }

    fn env(&self, component: Component) -> Vec<(&'static str, String)> {
        let url = |role| self.pg.cluster().url_as(role, &self.db_name);
        match component {
            Component::Api => vec![
                ("DATABASE_URL", url("tally_api")),
                ("NATS_URL", self.nats.url()),
                ("TALLY_HTTP_ADDR", self.api_addr.clone()),
                ("TALLY_JWT_SECRET", SECRET.to_owned()),
            ],
            Component::Relay => vec![
                ("DATABASE_URL", url("tally_relay")),
                ("NATS_URL", self.nats.url()),
                ("TALLY_RELAY_SLOT", self.db_name.clone()),
                ("TALLY_RELAY_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ],
            Component::Updater => vec![
                ("DATABASE_URL", url("tally_updater")),
                ("NATS_URL", self.nats.url()),
                ("TALLY_UPDATER_CONSUMER", CONSUMER.to_owned()),
                ("TALLY_UPDATER_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ],
            Component::Nats | Component::Postgres => Vec::new(),
        }
    }

    /// Starts a service process anew (after it was killed).
    async fn restart(&mut self, component: Component) {
        let process = ServiceProcess::spawn(
            match component {
                Component::Api => "tally-api",
                Component::Relay => "tally-relay",
                Component::Updater => "tally-updater",
                Component::Nats | Component::Postgres => unreachable!("not a tally binary"),
            },
            &self.env(component),
        );
        let old = match component {
            Component::Api => std::mem::replace(&mut self.api, process),
            Component::Relay => std::mem::replace(&mut self.relay, process),
            Component::Updater => std::mem::replace(&mut self.updater, process),
            Component::Nats | Component::Postgres => unreachable!("not a tally binary"),
        };
        drop(old);
    }

    /// SIGKILL `component`, wait `down`, start it again.
    async fn kill_and_restart(&mut self, component: Component, down: Duration) {
        match component {
            Component::Api => self.api.kill().await,
            Component::Relay => self.relay.kill().await,
            Component::Updater => self.updater.kill().await,
            Component::Nats => self.nats.stop().await,
            Component::Postgres => self.kill_postgres().await,
        }
        tokio::time::sleep(down).await;
        match component {
            Component::Nats => self.nats.start_again().await,
            Component::Postgres => {
                let pg = &self.pg;
                tokio::task::block_in_place(|| pg.start_again());
            }
            service => self.restart(service).await,
        }
    }

    /// SIGKILL to the postmaster and every server process at once, as a power cut would;
    /// the next start runs crash recovery. Server processes are found by their working
    /// directory, the data directory, so none is missed and the restart finds none alive.
    async fn kill_postgres(&self) {
        let db = connect(&self.pg.cluster().url(&self.db_name)).await;
        let data: String = db
            .query_one("SELECT current_setting('data_directory')", &[])
            .await
            .expect("the data directory")
            .get(0);
        drop(db);
        let data = std::fs::canonicalize(&data).expect("the data directory exists");
        let server_pids = || -> Vec<String> {
            std::fs::read_dir("/proc")
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|entry| {
                            std::fs::read_link(entry.path().join("cwd"))
                                .is_ok_and(|cwd| cwd == data)
                        })
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let pids = server_pids();
        // A process may exit between the listing and the kill: kill's status says nothing.
        let _ = tokio::process::Command::new("kill")
            .arg("-9")
            .args(&pids)
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        // Until the killed processes are reaped (not merely dead), the postmaster's pid still
        // answers and a new postmaster refuses the data directory; new children may also have
        // been forked in between.
        for _ in 0..400 {
            let pending: Vec<&String> = pids
                .iter()
                .filter(|pid| std::path::Path::new("/proc").join(pid).exists())
                .collect();
            let newcomers = server_pids();
            if pending.is_empty() && newcomers.is_empty() {
                return;
            }
            if !newcomers.is_empty() {
                let _ = tokio::process::Command::new("kill")
                    .arg("-9")
                    .args(&newcomers)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Postgres server processes survived SIGKILL");
    }

    /// The last lines each service logged, for failure messages.
    fn log_tails(&self) -> String {
        let tail = |log: String| {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "--- relay\n{}\n--- updater\n{}\n--- api\n{}",
            tail(self.relay.log()),
            tail(self.updater.log()),
            tail(self.api.log())
        )
    }

    fn assert_services_alive(&mut self) {
        for (name, process) in [
            ("api", &mut self.api),
            ("relay", &mut self.relay),
            ("updater", &mut self.updater),
        ] {
            assert!(
                !process.has_exited(),
                "the {name} exited on its own; its log:\n{}",
                process.log()
            );
        }
    }
}

fn post_id(n: usize) -> uuid::Uuid {
    uuid::Uuid::parse_str(&format!("00000000-0000-7000-8000-{n:012x}")).expect("a uuid")
}

/// What the workers know about the writes they sent.
#[derive(Debug, Default)]
struct Ledger {
    attempted: u64,
    acknowledged: u64,
    /// (post, user) → liked, after the last write on that pair that got a 2xx. None: a later
    /// write's outcome is unknown (no answer), so the pair is not checked.
    likes: HashMap<(uuid::Uuid, String), Option<bool>>,
    comments: HashMap<uuid::Uuid, Option<bool>>,
    /// Posts a worker deleted (or may have): their likes are not checked.
    deleted_posts: HashSet<uuid::Uuid>,
}

/// One worker's loop: random writes as its own users until `stop`.
async fn worker(
    index: usize,
    api: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys = tally_api::auth::TokenKeys::hs256(SECRET.as_bytes());
    let users: Vec<(String, String)> = (0..USERS_PER_WORKER)
        .map(|u| {
            let user = format!("w{index}-u{u}");
            let token = keys
                .issue(&user, Duration::from_secs(3600))
                .expect("a token");
            (user, token)
        })
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let mut own_posts: Vec<uuid::Uuid> = Vec::new();
    let mut own_comments: Vec<(uuid::Uuid, String)> = Vec::new();
    while !stop.is_cancelled() {
        let (user, token) = &users[rng.usize(..users.len())];
        let post = if rng.u8(..3) == 0 {
            post_id(1 + rng.usize(..HOT_POSTS))
        } else {
            post_id(1 + rng.usize(..POSTS))
        };
        let roll = rng.u8(..100);
        let send = |method: Method, path: String, body: Option<Value>| {
            let request = http
                .request(method, format!("http://{api}{path}"))
                .bearer_auth(token);
            let request = match body {
                Some(body) => request.json(&body),
                None => request,
            };
            request.send()
        };
        let (kind, sent) = match roll {
            0..35 => (
                Kind::Like(post, Some(true)),
                send(
                    Method::POST,
                    "/v1/likes".into(),
                    Some(json!({ "post_id": post })),
                )
                .await,
            ),
            35..55 => (
                Kind::Like(post, Some(false)),
                send(Method::DELETE, format!("/v1/likes/{post}"), None).await,
            ),
            55..75 => (
                Kind::Like(post, None),
                send(Method::POST, format!("/v1/likes/{post}/toggle"), None).await,
            ),
            75..88 => (
                Kind::Comment,
                send(
                    Method::POST,
                    format!("/v1/posts/{post}/comments"),
                    Some(json!({ "body": format!("chaos {}", rng.u32(..)) })),
                )
                .await,
            ),
            88..95 if !own_comments.is_empty() => {
                let (comment, author) = own_comments.swap_remove(rng.usize(..own_comments.len()));
                let token = users
                    .iter()
                    .find(|(u, _)| *u == author)
                    .map(|(_, token)| token)
                    .expect("the comment's author");
                (
                    Kind::DeleteComment(comment),
                    http.delete(format!("http://{api}/v1/comments/{comment}"))
                        .bearer_auth(token)
                        .send()
                        .await,
                )
            }
            95..98 => (
                Kind::NewPost,
                send(Method::POST, "/v1/posts".into(), Some(json!({}))).await,
            ),
            _ if !own_posts.is_empty() => {
                let own = own_posts.swap_remove(rng.usize(..own_posts.len()));
                // Its likes are unchecked from now on, whatever the answer.
                lock(&ledger).deleted_posts.insert(own);
                (
                    Kind::Other,
                    send(Method::DELETE, format!("/v1/posts/{own}"), None).await,
                )
            }
            _ => continue,
        };
        let answer = match sent {
            Ok(response) => {
                let status = response.status();
                Some((
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                ))
            }
            Err(_) => None,
        };
        let answer_status = answer.as_ref().map(|(status, _)| *status);
        {
            let mut ledger = lock(&ledger);
            ledger.attempted += 1;
            match answer {
                Some((status, body)) if status.is_success() => {
                    ledger.acknowledged += 1;
                    match kind {
                        Kind::Like(post, liked) => {
                            let liked = liked.or_else(|| body["liked"].as_bool());
                            ledger.likes.insert((post, user.clone()), liked);
                        }
                        Kind::Comment => {
                            if let Some(id) = id_of(&body) {
                                ledger.comments.insert(id, Some(true));
                                own_comments.push((id, user.clone()));
                            }
                        }
                        Kind::DeleteComment(id) => {
                            ledger.comments.insert(id, Some(false));
                        }
                        Kind::NewPost => {
                            if let Some(id) = id_of(&body) {
                                own_posts.push(id);
                            }
                        }
                        Kind::Other => {}
                    }
                }
                // A 4xx is a definite answer that changed nothing (e.g. the post was deleted).
                Some((status, _)) if status.is_client_error() => {}
                // No answer, or a 5xx: the write may or may not have happened.
                _ => match kind {
                    Kind::Like(post, _) => {
                        ledger.likes.insert((post, user.clone()), None);
                    }
                    Kind::DeleteComment(id) => {
                        ledger.comments.insert(id, None);
                    }
                    Kind::Comment | Kind::NewPost | Kind::Other => {}
                },
            }
        }
        let failed = !matches!(answer_status, Some(status) if status.is_success() || status.is_client_error());
        if failed {
            // Something is down: a client would back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn id_of(body: &Value) -> Option<uuid::Uuid> {
    body["id"]
        .as_str()
        .or_else(|| body["comment_id"].as_str())
        .and_then(|id| id.parse().ok())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Like(uuid::Uuid, Option<bool>),
    Comment,
    DeleteComment(uuid::Uuid),
    NewPost,
    Other,
}

/// Every message of the stream's `Nats-Msg-Id`, with how often it occurs.
async fn stream_ids(nats: &NatsServer) -> HashMap<String, u32> {
    let js = nats.jetstream().await;
    let mut stream = js.get_stream(tally_sql::STREAM).await.expect("the stream");
    let total = stream.info().await.expect("stream info").state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("an ephemeral consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut ids = HashMap::new();
    for read in 0..total {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let Ok(Some(Ok(message))) = next else {
            panic!("reading the stream stopped after {read} of {total} messages");
        };
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(tally_sql::HEADER_MSG_ID))
            .map(|v| v.as_str().to_owned())
            .expect("every message has a Nats-Msg-Id");
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// Waits until every outbox row is in the stream and the updater has applied the stream.
async fn converge(system: &System) -> bool {
    let deadline = Instant::now() + CONVERGE;
    let js = system.nats.jetstream().await;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(db) = tokio_postgres::connect(
            &system.pg.cluster().url(&system.db_name),
            tokio_postgres::NoTls,
        )
        .await
        else {
            continue;
        };
        let (db, connection) = db;
        tokio::spawn(connection);
        let Ok(row) = db.query_one("SELECT count(*) FROM outbox", &[]).await else {
            continue;
        };
        let outbox: i64 = row.get(0);
        let Ok(mut stream) = js.get_stream(tally_sql::STREAM).await else {
            continue;
        };
        let Ok(messages) = stream.info().await.map(|info| info.state.messages) else {
            continue;
        };
        let Ok(mut consumer) = stream.get_consumer::<pull::Config>(CONSUMER).await else {
            continue;
        };
        let Ok(consumer) = consumer.info().await else {
            continue;
        };
        if messages >= outbox as u64 && consumer.num_pending == 0 && consumer.num_ack_pending == 0 {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_component_at_random_loses_no_acknowledged_write_and_counts_each_once() {
    // Arrange
    let mut system = System::start().await;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            tokio::spawn(worker(
                index,
                system.api_addr.clone(),
                ledger.clone(),
                stop.clone(),
                seed.wrapping_add(index as u64),
            ))
        })
        .collect();

    // Act: kill a component every 1.5 to 3.5 s, each component once per round, in a random
    // order.
    let started = Instant::now();
    let mut kills: HashMap<Component, u32> = HashMap::new();
    let mut round = Vec::new();
    while started.elapsed() < run_length() {
        tokio::time::sleep(Duration::from_millis(1_500 + rng.u64(..2_000))).await;
        if round.is_empty() {
            round = COMPONENTS.to_vec();
            rng.shuffle(&mut round);
        }
        let component = round.pop().expect("a component");
        let down = Duration::from_millis(200 + rng.u64(..1_300));
        system.kill_and_restart(component, down).await;
        *kills.entry(component).or_default() += 1;
    }
    // Writes keep going a little after the last restart, so recovery is under load too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    let converged = converge(&system).await;
    system.assert_services_alive();

    // Assert
    let db = connect(&system.pg.cluster().url(&system.db_name)).await;
    let ledger = std::mem::take(&mut *lock(&ledger));
    let likes: HashSet<(uuid::Uuid, String)> = db
        .query("SELECT post_id, user_id FROM likes", &[])
        .await
        .expect("reading likes")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut lost_writes = 0_u64;
    let mut phantom_writes = 0_u64;
    for ((post, user), liked) in &ledger.likes {
        let (Some(liked), false) = (liked, ledger.deleted_posts.contains(post)) else {
            continue;
        };
        match (liked, likes.contains(&(*post, user.clone()))) {
            (true, false) => lost_writes += 1,
            (false, true) => phantom_writes += 1,
            _ => {}
        }
    }
    let live_comments: HashSet<uuid::Uuid> = db
        .query(
            "SELECT comment_id FROM comments WHERE deleted_at IS NULL",
            &[],
        )
        .await
        .expect("reading comments")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (comment, live) in &ledger.comments {
        match (live, live_comments.contains(comment)) {
            (Some(true), false) => lost_writes += 1,
            (Some(false), true) => phantom_writes += 1,
            _ => {}
        }
    }

    let outbox: HashSet<String> = db
        .query("SELECT event_id::text FROM outbox", &[])
        .await
        .expect("reading the outbox")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let stream = stream_ids(&system.nats).await;
    let events_lost = outbox.iter().filter(|id| !stream.contains_key(*id)).count();
    let events_repeated: u32 = stream.values().map(|n| n - 1).sum();
    let drift = db
        .query_one(
            "SELECT coalesce(sum(greatest(counted_likes - actual_likes, 0) \
                               + greatest(counted_comments - actual_comments, 0)), 0)::bigint, \
                    coalesce(sum(greatest(actual_likes - counted_likes, 0) \
                               + greatest(actual_comments - counted_comments, 0)), 0)::bigint \
             FROM count_drift",
            &[],
        )
        .await
        .expect("reading count_drift");
    let (double_counted, under_counted): (i64, i64) = (drift.get(0), drift.get(1));
    // An event dead-lettered for going negative leaves its count one too high: the reasons
    // say which, and after how long a hold.
    let dead_letters: Vec<String> = db
        .query(
            "SELECT reason FROM dead_letters ORDER BY dead_letter_id",
            &[],
        )
        .await
        .expect("reading dead_letters")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let held_back = db
        .query_one(
            "SELECT count(*), coalesce(max(holds), 0)::bigint FROM held_back",
            &[],
        )
        .await
        .expect("reading held_back");
    let (held_events, most_holds): (i64, i64) = (held_back.get(0), held_back.get(1));
    let reconcile = tokio::process::Command::new(binary("tally-updater"))
        .arg("reconcile")
        .env(
            "DATABASE_URL",
            system.pg.cluster().url_as("tally_updater", &system.db_name),
        )
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("running tally-updater reconcile");

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "chaos ({:.0} s, seed {seed}): {} writes sent, {} acknowledged",
        run_length().as_secs_f64(),
        ledger.attempted,
        ledger.acknowledged
    );
    let _ = writeln!(
        summary,
        "  kills: {}",
        COMPONENTS
            .iter()
            .map(|c| format!("{c:?} {}", kills.get(c).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        summary,
        "  acknowledged writes lost: {lost_writes}, writes undone without a request: {phantom_writes}"
    );
    let _ = writeln!(
        summary,
        "  events: {} in the outbox, {} lost on the way to the stream, {} in the stream twice",
        outbox.len(),
        events_lost,
        events_repeated
    );
    let _ = writeln!(
        summary,
        "  counts: {double_counted} double-counted, {under_counted} missing; reconcile exit {}",
        reconcile.status
    );
    let _ = writeln!(
        summary,
        "  held back for going negative: {held_events} events, at most {most_holds} times; dead letters: {}",
        dead_letters.len()
    );
    for reason in &dead_letters {
        let _ = writeln!(summary, "    dead letter: {reason}");
    }
    eprint!("{summary}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-summary.txt"),
        &summary,
    );

    assert!(
        converged,
        "the pipeline did not catch up in {CONVERGE:?}\n{summary}"
    );
    assert!(
        ledger.acknowledged > 0,
        "no write was acknowledged\n{summary}"
    );
    assert_eq!(
        kills.len(),
        COMPONENTS.len(),
        "every component was killed\n{summary}"
    );
    assert_eq!((lost_writes, phantom_writes), (0, 0), "{summary}");
    assert_eq!((events_lost, events_repeated), (0, 0), "{summary}");
    assert_eq!((double_counted, under_counted), (0, 0), "{summary}");
    assert!(dead_letters.is_empty(), "{summary}");
    assert!(
        reconcile.status.success(),
        "reconcile reported drift:\n{}{}\n{summary}",
        String::from_utf8_lossy(&reconcile.stdout),
        String::from_utf8_lossy(&reconcile.stderr)
    );
}

/// How long NATS stays down in the outage test (`TALLY_OUTAGE_SECS`, 60 by default).
fn outage_length() -> Duration {
    std::env::var("TALLY_OUTAGE_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// Likes from fresh users on random posts until `stop`; returns (2xx, other answers).
fn like_load(
    name: &'static str,
    api: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<(u64, Vec<u16>)> {
    tokio::spawn(async move {
        let keys = tally_api::auth::TokenKeys::hs256(SECRET.as_bytes());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let (mut ok, mut other) = (0_u64, Vec::new());
        let mut n = 0_usize;
        while !stop.is_cancelled() {
            n += 1;
            let token = keys
                .issue(&format!("{name}-{n}"), Duration::from_secs(3600))
                .expect("a token");
            let answer = http
                .post(format!("http://{api}/v1/likes"))
                .bearer_auth(token)
                .json(&json!({ "post_id": post_id(1 + n % POSTS) }))
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => ok += 1,
                Ok(response) => other.push(response.status().as_u16()),
                Err(_) => other.push(0),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, other)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_for_a_minute_the_api_keeps_answering_and_the_backlog_drains_after() {
    // Arrange
    let mut system = System::start().await;
    let stop = CancellationToken::new();
    let load = like_load("steady", system.api_addr.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Act: NATS goes away for the outage, under load, and comes back.
    system.nats.stop().await;
    let down_at = Instant::now();
    let during = like_load("outage", system.api_addr.clone(), stop.clone());
    tokio::time::sleep(outage_length()).await;
    let outage = down_at.elapsed();
    system.nats.start_again().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let (before_ok, before_other) = load.await.expect("the load task");
    let (during_ok, during_other) = during.await.expect("the outage load task");
    let converged = converge(&system).await;
    system.assert_services_alive();

    // Assert
    let db = connect(&system.pg.cluster().url(&system.db_name)).await;
    let outbox: i64 = db
        .query_one("SELECT count(*) FROM outbox", &[])
        .await
        .expect("counting the outbox")
        .get(0);
    let drift: i64 = db
        .query_one("SELECT count(*) FROM count_drift", &[])
        .await
        .expect("reading count_drift")
        .get(0);
    eprintln!(
        "NATS down for {:.0} s: {during_ok} likes acknowledged during the outage, {} not; \
         {} events in the outbox",
        outage.as_secs_f64(),
        during_other.len(),
        outbox
    );
    assert!(
        during_ok > 0,
        "no like was acknowledged while NATS was down"
    );
    assert!(
        during_other.is_empty() && before_other.is_empty(),
        "answers other than 2xx: {during_other:?} {before_other:?}"
    );
    assert!(
        converged,
        "the backlog did not drain after NATS came back\n{}",
        system.log_tails()
    );
    assert_eq!(outbox as u64, before_ok + during_ok);
    assert_eq!(drift, 0, "counts drifted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_writes_are_503_with_retry_after_and_recover_without_restarts() {
    // Arrange
    let mut system = System::start().await;
    let keys = tally_api::auth::TokenKeys::hs256(SECRET.as_bytes());
    let token = keys
        .issue("outage-user", Duration::from_secs(3600))
        .expect("a token");
    let http = reqwest::Client::new();
    let like = || {
        http.post(format!("http://{}/v1/likes", system.api_addr))
            .bearer_auth(&token)
            .json(&json!({ "post_id": post_id(7) }))
            .send()
    };

    // Act: a clean stop of Postgres, a like, Postgres back, the same like again.
    let pg = &system.pg;
    tokio::task::block_in_place(|| pg.stop("fast"));
    let refused = like().await.expect("an answer while Postgres is down");
    let ready = http
        .get(format!("http://{}/readyz", system.api_addr))
        .send()
        .await
        .expect("an answer from /readyz");
    tokio::task::block_in_place(|| pg.start_again());
    let mut accepted = None;
    for _ in 0..100 {
        let response = like().await.expect("an answer after Postgres is back");
        if response.status().is_success() {
            accepted = Some(response.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged = converge(&system).await;

    // Assert
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.headers().contains_key(reqwest::header::RETRY_AFTER),
        "a 503 says when to retry"
    );
    let problem: Value = refused.json().await.expect("a problem body");
    assert_eq!(problem["status"], 503);
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(accepted, Some(reqwest::StatusCode::CREATED));
    assert!(
        converged,
        "the pipeline did not recover\n{}",
        system.log_tails()
    );
    let db = connect(&system.pg.cluster().url(&system.db_name)).await;
    let likes: i64 = db
        .query_one(
            "SELECT likes FROM post_counts WHERE post_id = $1",
            &[&post_id(7)],
        )
        .await
        .expect("the post's count")
        .get(0);
    assert_eq!(likes, 1);
    // The same processes served before and after: nothing was restarted.
    system.assert_services_alive();
}
