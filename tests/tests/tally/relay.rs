//! The relay under faults, run as the real `tally-relay` binary so it can be SIGKILLed and
//! SIGTERMed: crashes, NATS and Postgres restarts under load lose nothing and leave every
//! event in the stream exactly once; an idle outbox does not pin WAL; a standby takes over;
//! a clean stop replays nothing; retention prunes only published rows; misconfiguration
//! fails with the fix. Each test has its own database, slot and nats-server; the Postgres
//! restart runs on a private cluster so the other tests never notice.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use tally_tests::cluster::{PgCluster, PrivatePostgres, free_port};
use tally_tests::process::ServiceProcess;
use tally_tests::{NatsServer, TestApp, connect, postgres};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events per transaction written by the load generator.
const ROWS_PER_TXN: i32 = 20;
/// Generous bound for the relay to catch up or take over on a loaded 2-core machine.
const CATCH_UP: Duration = Duration::from_secs(60);

/// One test's database, slot and nats-server, with relays started as processes.
struct Fixture {
    pg: PgCluster,
    db_name: String,
    db: tokio_postgres::Client,
    nats: NatsServer,
}

impl Fixture {
    async fn new(pg: &PgCluster) -> Fixture {
        let (db_name, db) = pg.fresh_database().await;
        Fixture {
            pg: pg.clone(),
            db_name,
            db,
            nats: NatsServer::start().await,
        }
    }

    fn relay_env(&self, metrics_port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.pg.url_as("tally_relay", &self.db_name)),
            ("NATS_URL", self.nats.url()),
            ("TALLY_RELAY_SLOT", self.db_name.clone()),
            (
                "TALLY_RELAY_METRICS_ADDR",
                format!("127.0.0.1:{metrics_port}"),
            ),
        ]
    }

    fn spawn_relay(&self) -> ServiceProcess {
        ServiceProcess::spawn("tally-relay", &self.relay_env(0))
    }

    async fn outbox_ids(&self) -> HashSet<String> {
        self.db
            .query("SELECT event_id::text FROM outbox", &[])
            .await
            .expect("reading outbox ids")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    async fn insert_events(&self, n: i32) {
        self.db
            .execute(INSERT_EVENTS, &[&n])
            .await
            .expect("inserting outbox rows");
    }

    async fn stream_len(&self) -> Option<u64> {
        let js = self.nats.jetstream().await;
        let mut stream = js.get_stream(tally_sql::STREAM).await.ok()?;
        Some(stream.info().await.ok()?.state.messages)
    }

    /// Waits until the stream holds as many messages as the outbox has rows, then returns
    /// every message's `Nats-Msg-Id`, in stream order.
    async fn drained_stream_ids(&self) -> Vec<String> {
        let expected = self.outbox_ids().await.len() as u64;
        let reached = TestApp::eventually(CATCH_UP, || async {
            (self.stream_len().await? >= expected).then_some(())
        })
        .await;
        if reached.is_none() {
            let slot = self
                .db
                .query_one(
                    "SELECT active, lag_bytes, retained_wal_bytes FROM relay_slots \
                     WHERE slot_name = $1",
                    &[&self.db_name],
                )
                .await
                .map(|r| (r.get::<_, bool>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)));
            panic!(
                "the stream holds {:?} messages, the outbox {expected} rows; slot (active, lag, retained): {slot:?}",
                self.stream_len().await
            );
        }
        stream_ids(&self.nats, expected).await
    }

    /// The slot's `confirmed_flush_lsn` as a number.
    async fn confirmed(&self) -> i64 {
        self.db
            .query_one(
                "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.db_name],
            )
            .await
            .expect("reading the slot")
            .get(0)
    }

    async fn drop_slot(&self) {
        let _ = self
            .db
            .execute("SELECT pg_drop_replication_slot($1)", &[&self.db_name])
            .await;
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const INSERT_EVENTS: &str = "INSERT INTO outbox (event_id, event_type, subject, post_id, payload, headers) \
     SELECT gen_random_uuid(), 'like.added', 'tally.like.added.' || p, p, '{\"version\":1}', \
            '{\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"}' \
     FROM (SELECT gen_random_uuid() AS p FROM generate_series(1, $1)) s";

/// Reads `count` messages from the start of the stream and returns their `Nats-Msg-Id`s.
async fn stream_ids(nats: &NatsServer, count: u64) -> Vec<String> {
    let js = nats.jetstream().await;
    let stream = js.get_stream(tally_sql::STREAM).await.expect("the stream");
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("an ephemeral consumer");
    let mut messages = consumer.messages().await.expect("a message stream");
    let mut ids = Vec::new();
    while (ids.len() as u64) < count {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let Ok(Some(Ok(message))) = next else {
            panic!("reading the stream stopped after {} messages", ids.len());
        };
        let headers = message.headers.as_ref();
        let id = headers
            .and_then(|h| h.get(tally_sql::HEADER_MSG_ID))
            .map(|v| v.as_str().to_owned())
            .expect("every message has a Nats-Msg-Id");
        // Every row the tests write carries a trace context in its headers column.
        assert_eq!(
            headers
                .and_then(|h| h.get(tally_sql::HEADER_TRACEPARENT))
                .map(|v| v.as_str()),
            Some(TRACEPARENT),
            "event {id} lost its traceparent"
        );
        ids.push(id);
    }
    ids
}

/// Asserts that the stream holds every outbox event exactly once.
async fn assert_exactly_once(fixture: &Fixture) {
    let outbox = fixture.outbox_ids().await;
    let ids = fixture.drained_stream_ids().await;
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), distinct.len(), "the stream holds duplicates");
    assert_eq!(
        distinct.len(),
        outbox.len(),
        "stream and outbox differ in size"
    );
    assert!(
        distinct == outbox,
        "stream and outbox hold different events"
    );
    assert_eq!(fixture.stream_len().await, Some(outbox.len() as u64));
}

/// Writes transactions of [`ROWS_PER_TXN`] outbox rows as fast as it can until stopped,
/// reconnecting whenever Postgres goes away. Returns the number of committed transactions.
fn write_load(url: String) -> (CancellationToken, JoinHandle<u64>) {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let mut committed = 0;
        while !token.is_cancelled() {
            let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(connection);
            while !token.is_cancelled() {
                match client.execute(INSERT_EVENTS, &[&ROWS_PER_TXN]).await {
                    Ok(_) => committed += 1,
                    Err(_) => break,
                }
                // Leaves the other tests some of the machine.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        committed
    });
    (stop, task)
}

async fn stop_load(load: (CancellationToken, JoinHandle<u64>)) -> u64 {
    load.0.cancel();
    let committed = load.1.await.expect("the load task panicked");
    assert!(committed > 0, "the load generator committed nothing");
    committed
}

/// The value of `metric` in a Prometheus text body.
fn metric(body: &str, metric: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(metric)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn killing_the_relay_repeatedly_under_load_leaves_every_event_exactly_once() {
    // Arrange: the first relay creates the slot, which sees only what is written after.
    let fixture = Fixture::new(postgres()).await;
    let mut relay = fixture.spawn_relay();
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .unwrap_or_else(|| panic!("relay never streamed: {}", relay.log()));
    let load = write_load(fixture.pg.url(&fixture.db_name));

    // Act: kill -9 the relay five times mid-stream, then let a last one drain.
    for round in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        relay.kill().await;
        relay = fixture.spawn_relay();
        relay
            .wait_for_log("streaming from the replication slot", CATCH_UP)
            .await
            .unwrap_or_else(|| panic!("relay never streamed: {}", relay.log()));
    }
    stop_load(load).await;

    // Assert
    assert_exactly_once(&fixture).await;
    drop(relay);
    fixture.drop_slot().await;
}

#[tokio::test]
async fn restarting_nats_under_load_loses_nothing_and_confirms_nothing_unacked() {
    // Arrange
    let mut fixture = Fixture::new(postgres()).await;
    let relay = fixture.spawn_relay();
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the relay streams");
    let load = write_load(fixture.pg.url(&fixture.db_name));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: NATS dies under load and comes back on the same port and store.
    fixture.nats.stop().await;
    // Confirmations already on their way land within a status interval (1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let confirmed_while_down = fixture.confirmed().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let confirmed_later = fixture.confirmed().await;
    fixture.nats.start_again().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_load(load).await;

    // Assert: nothing was confirmed while nothing could be acked, and nothing is lost.
    assert_eq!(confirmed_while_down, confirmed_later);
    assert_exactly_once(&fixture).await;
    drop(relay);
    fixture.drop_slot().await;
}

#[tokio::test]
async fn restarting_postgres_under_load_loses_nothing() {
    // Arrange: a private cluster, so crashing it disturbs no other test.
    let private = tokio::task::spawn_blocking(|| PrivatePostgres::start(""))
        .await
        .expect("starting a private cluster");
    let fixture = Fixture::new(private.cluster()).await;
    let relay = fixture.spawn_relay();
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the relay streams");
    let load = write_load(fixture.pg.url(&fixture.db_name));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: crash Postgres (no shutdown checkpoint) and start it again.
    let private = tokio::task::spawn_blocking(move || {
        private.stop("immediate");
        std::thread::sleep(Duration::from_millis(500));
        private.start_again();
        private
    })
    .await
    .expect("restarting the private cluster");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_load(load).await;

    // Assert: the fixture's connection died with the server; check through a new one.
    let fixture = Fixture {
        db: connect(&private.cluster().url(&fixture.db_name)).await,
        ..fixture
    };
    assert_exactly_once(&fixture).await;
    drop(relay);
}

#[tokio::test]
async fn writing_100_mb_to_another_table_while_the_outbox_is_idle_keeps_retained_wal_bounded() {
    // Arrange
    let fixture = Fixture::new(postgres()).await;
    let relay = fixture.spawn_relay();
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the relay streams");
    fixture.insert_events(10).await;
    fixture
        .db
        .batch_execute("CREATE TABLE filler (body text)")
        .await
        .expect("creating the filler table");
    let lsn = |sql: &'static str| async {
        let row = fixture.db.query_one(sql, &[]).await.expect(sql);
        row.get::<_, i64>(0)
    };
    let before = lsn("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").await;

    // Act: 100 MB of 1 kB rows (below the TOAST threshold, so not compressed).
    for _ in 0..10 {
        fixture
            .db
            .batch_execute(
                "INSERT INTO filler SELECT repeat(md5(random()::text), 32) \
                 FROM generate_series(1, 10000)",
            )
            .await
            .expect("writing filler rows");
    }
    let after = lsn("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").await;
    assert!(
        after - before >= 100_000_000,
        "wrote only {} bytes of WAL",
        after - before
    );

    // Assert: the slot confirms past all of it although no outbox row was written, and
    // after a checkpoint (which logs the snapshot restart_lsn moves to) it pins less than
    // half of it, other tests' WAL included.
    let confirmed = TestApp::eventually(CATCH_UP, || async {
        (fixture.confirmed().await >= after).then_some(())
    })
    .await;
    assert!(
        confirmed.is_some(),
        "the slot did not confirm past the idle WAL"
    );
    let retained = TestApp::eventually(CATCH_UP, || async {
        fixture.db.batch_execute("CHECKPOINT").await.ok()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let retained = fixture
            .db
            .query_one(
                "SELECT retained_wal_bytes FROM relay_slots WHERE slot_name = $1",
                &[&fixture.db_name],
            )
            .await
            .ok()?
            .get::<_, i64>(0);
        (retained < 48 * 1024 * 1024).then_some(retained)
    })
    .await;
    assert!(retained.is_some(), "the slot still pins the idle WAL");
    assert_exactly_once(&fixture).await;
    drop(relay);
    fixture.drop_slot().await;
}

#[tokio::test]
async fn a_standby_relay_takes_over_when_the_active_one_is_killed() {
    // Arrange: two relays on one slot; one streams, the other stands by.
    let fixture = Fixture::new(postgres()).await;
    let mut first = fixture.spawn_relay();
    first
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the first relay streams");
    let second = fixture.spawn_relay();
    second
        .wait_for_log("standing by", CATCH_UP)
        .await
        .unwrap_or_else(|| panic!("the second relay did not stand by: {}", second.log()));
    fixture.insert_events(50).await;
    assert_eq!(fixture.drained_stream_ids().await.len(), 50);

    // Act
    first.kill().await;
    fixture.insert_events(50).await;

    // Assert: the standby streams the new events (the bound is generous; takeover itself
    // takes the standby's retry interval, at most 5 s).
    second
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .unwrap_or_else(|| panic!("the standby never took over: {}", second.log()));
    assert_exactly_once(&fixture).await;
    drop(second);
    fixture.drop_slot().await;
}

#[tokio::test]
async fn a_clean_stop_under_load_then_a_restart_publishes_no_duplicates() {
    // Arrange
    let fixture = Fixture::new(postgres()).await;
    let mut first = fixture.spawn_relay();
    first
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the relay streams");
    let load = write_load(fixture.pg.url(&fixture.db_name));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Act: SIGTERM mid-stream, then a new relay drains the rest.
    let status = first.terminate(Duration::from_secs(30)).await;
    stop_load(load).await;
    let port = free_port();
    let _second = ServiceProcess::spawn("tally-relay", &fixture.relay_env(port));

    // Assert: a clean exit with its final confirmation, every event once, and JetStream
    // flagged none of the second relay's publishes as a duplicate.
    assert!(
        status.is_some_and(|s| s.success()),
        "the relay did not exit cleanly ({status:?}): {}",
        first.log()
    );
    assert!(
        first
            .log()
            .contains("confirmed the last acknowledged position"),
        "{}",
        first.log()
    );
    assert_exactly_once(&fixture).await;
    let body = TestApp::eventually(CATCH_UP, || async {
        let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        // Acks are counted after the stream stored the message: wait for the count.
        (metric(&body, "tally_relay_in_flight") == Some(0.0)).then_some(body)
    })
    .await
    .expect("the second relay serves metrics");
    assert_eq!(
        metric(&body, "tally_relay_duplicates_total"),
        Some(0.0),
        "{body}"
    );
    assert!(metric(&body, "tally_relay_events_published_total").is_some_and(|n| n > 0.0));
    assert!(metric(&body, "tally_relay_confirmed_lsn").is_some_and(|n| n > 0.0));
    let js = fixture.nats.jetstream().await;
    let mut stream = js.get_stream(tally_sql::STREAM).await.expect("the stream");
    let config = &stream.info().await.expect("stream info").config;
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(config.duplicate_window, Duration::from_secs(2 * 60 * 60));
    fixture.drop_slot().await;
}

#[tokio::test]
async fn retention_prunes_published_rows_but_never_unpublished_ones() {
    // Arrange: a one-second retention, checked every second.
    let mut fixture = Fixture::new(postgres()).await;
    let mut env = fixture.relay_env(0);
    env.push(("TALLY_OUTBOX_RETENTION_SECS", "1".into()));
    env.push(("TALLY_OUTBOX_PRUNE_INTERVAL_SECS", "1".into()));
    let relay = ServiceProcess::spawn("tally-relay", &env);
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the relay streams");
    fixture.insert_events(40).await;
    let pruned = TestApp::eventually(CATCH_UP, || async {
        fixture.outbox_ids().await.is_empty().then_some(())
    });
    assert!(pruned.await.is_some(), "published rows were not pruned");

    // Act: rows written while NATS is down cannot be published.
    fixture.nats.stop().await;
    fixture.insert_events(30).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Assert: they outlive the retention until published, then go too.
    assert_eq!(fixture.outbox_ids().await.len(), 30);
    fixture.nats.start_again().await;
    let len = TestApp::eventually(CATCH_UP, || async {
        (fixture.stream_len().await? >= 70).then_some(())
    });
    assert!(
        len.await.is_some(),
        "the unpublished rows never reached the stream"
    );
    let pruned = TestApp::eventually(CATCH_UP, || async {
        fixture.outbox_ids().await.is_empty().then_some(())
    });
    assert!(pruned.await.is_some(), "published rows were not pruned");
    assert_eq!(stream_ids(&fixture.nats, 70).await.len(), 70);
    drop(relay);
    fixture.drop_slot().await;
}

#[tokio::test]
async fn misconfiguration_fails_with_a_message_naming_the_fix() {
    // Arrange
    let pg = postgres();
    let (db_name, db) = pg.fresh_database().await;
    let nats = NatsServer::start().await;
    let plain_nats = NatsServer::start_without_jetstream().await;
    let config = |role: &str, nats_url: String| {
        let mut config = tally_relay::Config::new(pg.url_as(role, &db_name), nats_url);
        config.slot = db_name.clone();
        config.metrics_addr = "127.0.0.1:0".parse().expect("an address");
        config
    };

    // Act
    let no_replication = tally_relay::Relay::build(config("tally_api", nats.url())).await;
    let no_jetstream = tally_relay::Relay::build(config("tally_relay", plain_nats.url())).await;

    // Assert
    let message = |result: Result<tally_relay::Relay, tally_relay::RelayError>| {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    };
    let no_replication = message(no_replication);
    assert!(
        no_replication.contains("ALTER ROLE tally_api REPLICATION"),
        "{no_replication}"
    );
    let no_jetstream = message(no_jetstream);
    assert!(no_jetstream.contains("has no JetStream"), "{no_jetstream}");
    assert!(no_jetstream.contains("-js"), "{no_jetstream}");
    let _ = db
        .execute("SELECT pg_drop_replication_slot($1)", &[&db_name])
        .await;
}

#[tokio::test]
async fn a_cluster_without_logical_wal_is_refused_with_the_fix() {
    // Arrange
    let private = tokio::task::spawn_blocking(|| PrivatePostgres::start("-c wal_level=replica"))
        .await
        .expect("starting a private cluster");
    let (db_name, _db) = private.cluster().fresh_database().await;
    let nats = NatsServer::start().await;
    let mut config = tally_relay::Config::new(
        private.cluster().url_as("tally_relay", &db_name),
        nats.url(),
    );
    config.metrics_addr = "127.0.0.1:0".parse().expect("an address");

    // Act
    let built = tally_relay::Relay::build(config).await;

    // Assert
    let message = built.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("ALTER SYSTEM SET wal_level = logical"),
        "{message}"
    );
}

/// Measures how fast the relay drains a backlog of 100,000 outbox rows (10 per transaction)
/// next to `pg_recvlogical` decoding the same rows through pgoutput into /dev/null. Prints
/// both; asserts only that everything arrived. Run it on release binaries:
/// `cargo build --release -p tally-relay && TALLY_TEST_BIN_DIR=target/release
/// cargo test -p tally-tests --test tally -- --ignored relay::drain_rate --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check: run by hand"]
async fn drain_rate_on_a_100k_backlog_next_to_pg_recvlogical() {
    // Arrange: both slots exist before the backlog is written.
    const ROWS: i64 = 100_000;
    let fixture = Fixture::new(postgres()).await;
    let mut relay = fixture.spawn_relay();
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .expect("the relay streams");
    let stopped = relay.terminate(Duration::from_secs(30)).await;
    assert!(stopped.is_some_and(|s| s.success()));
    let recv_slot = format!("{}_recv", fixture.db_name);
    fixture
        .db
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&recv_slot],
        )
        .await
        .expect("creating the pg_recvlogical slot");
    fixture
        .db
        .batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{} LOOP \
               INSERT INTO outbox (event_id, event_type, subject, post_id, payload) \
               SELECT gen_random_uuid(), 'like.added', 'tally.like.added.' || p, p, '{{\"version\":1}}' \
               FROM (SELECT gen_random_uuid() AS p FROM generate_series(1, 10)) s; \
               COMMIT; END LOOP; END $$",
            ROWS / 10
        ))
        .await
        .expect("writing the backlog");
    let end_lsn: String = fixture
        .db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("reading the WAL position")
        .get(0);

    // Act: the relay drains the backlog into JetStream ...
    let started = std::time::Instant::now();
    let relay = fixture.spawn_relay();
    let drained = TestApp::eventually(Duration::from_secs(300), || async {
        (fixture.stream_len().await? >= ROWS as u64).then_some(())
    })
    .await;
    let relay_secs = started.elapsed().as_secs_f64();
    drop(relay);

    // ... and pg_recvlogical decodes the same WAL into /dev/null.
    let started = std::time::Instant::now();
    let status =
        tokio::process::Command::new(tally_tests::cluster::pg_bindir().join("pg_recvlogical"))
            .args([
                "-d",
                &fixture.pg.url(&fixture.db_name),
                "--slot",
                &recv_slot,
            ])
            .args([
                "--start",
                "--no-loop",
                "--endpos",
                &end_lsn,
                "-f",
                "/dev/null",
            ])
            .args([
                "-o",
                "proto_version=1",
                "-o",
                "publication_names=tally_outbox",
            ])
            .status()
            .await
            .expect("running pg_recvlogical");
    let recv_secs = started.elapsed().as_secs_f64();

    // Assert
    assert!(drained.is_some(), "the relay did not drain the backlog");
    assert!(status.success(), "pg_recvlogical failed: {status}");
    println!(
        "relay: {ROWS} events in {relay_secs:.2} s ({:.0}/s); pg_recvlogical: {recv_secs:.2} s ({:.0}/s)",
        ROWS as f64 / relay_secs,
        ROWS as f64 / recv_secs
    );
    let _ = fixture
        .db
        .execute("SELECT pg_drop_replication_slot($1)", &[&recv_slot])
        .await;
    fixture.drop_slot().await;
}

#[tokio::test]
async fn a_relay_started_while_postgres_is_down_waits_for_it() {
    // Arrange: a private cluster, stopped once its database exists.
    let private = tokio::task::spawn_blocking(|| PrivatePostgres::start(""))
        .await
        .expect("starting a private cluster");
    let fixture = Fixture::new(private.cluster()).await;
    let private = tokio::task::spawn_blocking(move || {
        private.stop("fast");
        private
    })
    .await
    .expect("stopping the private cluster");

    // Act: the relay starts first; Postgres follows.
    let mut relay = fixture.spawn_relay();
    let waiting = relay
        .wait_for_log("not reachable; retrying", CATCH_UP)
        .await;
    let private = tokio::task::spawn_blocking(move || {
        private.start_again();
        private
    })
    .await
    .expect("starting the private cluster again");
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .unwrap_or_else(|| panic!("the relay never streamed: {}", relay.log()));
    let fixture = Fixture {
        db: connect(&private.cluster().url(&fixture.db_name)).await,
        ..fixture
    };
    fixture.insert_events(25).await;

    // Assert
    assert!(waiting.is_some(), "{}", relay.log());
    assert!(!relay.has_exited(), "{}", relay.log());
    assert_exactly_once(&fixture).await;
}

#[tokio::test]
async fn rows_written_before_the_first_relay_created_its_slot_are_relayed() {
    // Arrange: the api wrote before any relay ran, so no slot saw these rows.
    let fixture = Fixture::new(postgres()).await;
    fixture.insert_events(120).await;

    // Act
    let relay = fixture.spawn_relay();
    relay
        .wait_for_log("streaming from the replication slot", CATCH_UP)
        .await
        .unwrap_or_else(|| panic!("the relay never streamed: {}", relay.log()));
    fixture.insert_events(30).await;

    // Assert
    assert!(
        relay
            .log()
            .contains("published the outbox rows written before the slot existed")
    );
    assert_exactly_once(&fixture).await;
    drop(relay);
    fixture.drop_slot().await;
}
