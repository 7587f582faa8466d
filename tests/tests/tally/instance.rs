//! Every replica says which one it is (`TALLY_INSTANCE`): the api, relay and updater, run as
//! their real binaries, show their instance name in Postgres' `application_name`, in their
//! NATS client name, in an info metric and on every log line; a bad name stops them at start
//! with a message naming the variable.

use std::collections::HashSet;
use std::time::Duration;

use tally_tests::cluster::free_port;
use tally_tests::process::ServiceProcess;
use tally_tests::{JWT_SECRET, NatsServer, TestApp, postgres};

/// Generous bound for the three services to start and the pipeline to count a like.
const START: Duration = Duration::from_secs(60);

/// The three services as processes, each with its own instance name, on one database and a
/// monitored nats-server.
struct Replicas {
    db_name: String,
    db: tokio_postgres::Client,
    nats: NatsServer,
    api_url: String,
    relay_metrics: String,
    updater_metrics: String,
    /// (instance name, process) of the api, the relay and the updater.
    services: [(String, ServiceProcess); 3],
}

impl Replicas {
    /// Starts the three services and waits until a like made through the api is counted, so
    /// each has its Postgres and NATS connections open.
    async fn start() -> Replicas {
        let (db_name, db) = postgres().fresh_database().await;
        let nats = NatsServer::start_monitored().await;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut ports: Vec<u16> = Vec::with_capacity(3);
        while ports.len() < 3 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let addrs = [ports[0], ports[1], ports[2]].map(|p| format!("127.0.0.1:{p}"));
        let services = service_env(&db_name, &nats, &addrs).map(|(binary, mut env)| {
            // Dots and a colon: a name as a host and port would give it.
            let instance = format!("{binary}-{tag}.replica:7");
            env.push(("TALLY_INSTANCE", instance.clone()));
            (instance, ServiceProcess::spawn(binary, &env))
        });
        let [api_addr, relay_metrics, updater_metrics] = addrs;
        let replicas = Replicas {
            db_name,
            db,
            nats,
            api_url: format!("http://{api_addr}"),
            relay_metrics: format!("http://{relay_metrics}/metrics"),
            updater_metrics: format!("http://{updater_metrics}/metrics"),
            services,
        };
        replicas.like_and_wait_for_the_count().await;
        replicas
    }

    async fn like_and_wait_for_the_count(&self) {
        let token = tally_api::auth::TokenKeys::hs256(JWT_SECRET.as_bytes())
            .issue("instance-user", Duration::from_secs(600))
            .expect("signing a token");
        let http = reqwest::Client::new();
        let post_id = uuid::Uuid::now_v7();
        let created = TestApp::eventually(START, || async {
            let answer = http
                .post(format!("{}/v1/posts", self.api_url))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "id": post_id }))
                .send()
                .await
                .ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
        assert!(
            created.is_some(),
            "the api did not come up\n{}",
            self.logs()
        );
        let liked = http
            .post(format!("{}/v1/likes", self.api_url))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "post_id": post_id }))
            .send()
            .await
            .expect("liking");
        assert_eq!(liked.status(), reqwest::StatusCode::CREATED);
        let counted = TestApp::eventually(START, || async {
            let row = self
                .db
                .query_opt(
                    "SELECT 1 FROM post_counts WHERE post_id = $1 AND likes = 1",
                    &[&post_id],
                )
                .await
                .ok()?;
            row.map(|_| ())
        })
        .await;
        assert!(
            counted.is_some(),
            "the like was not counted\n{}",
            self.logs()
        );
    }

    /// Stops the services (SIGTERM) and drops the slot, which would pin WAL for the other
    /// tests.
    async fn stop(mut self) {
        self.terminate().await;
        let _ = self
            .db
            .execute("SELECT pg_drop_replication_slot($1)", &[&self.db_name])
            .await;
    }

    /// SIGTERM to each service, waiting until it exited (killed after 10 s).
    async fn terminate(&mut self) {
        for (_, process) in &mut self.services {
            process.terminate(Duration::from_secs(10)).await;
        }
    }

    fn instance(&self, index: usize) -> &str {
        &self.services[index].0
    }

    fn logs(&self) -> String {
        self.services
            .iter()
            .map(|(name, process)| format!("--- {name}\n{}", process.log()))
            .collect()
    }
}

/// The api's, the relay's and the updater's environment; `addrs` are the api's address and
/// the relay's and the updater's metrics addresses.
fn service_env(
    db_name: &str,
    nats: &NatsServer,
    addrs: &[String; 3],
) -> [(&'static str, Vec<(&'static str, String)>); 3] {
    let url = |role| postgres().url_as(role, db_name);
    [
        (
            "tally-api",
            vec![
                ("DATABASE_URL", url("tally_api")),
                ("TALLY_HTTP_ADDR", addrs[0].clone()),
                ("TALLY_JWT_SECRET", JWT_SECRET.to_owned()),
            ],
        ),
        (
            "tally-relay",
            vec![
                ("DATABASE_URL", url("tally_relay")),
                ("NATS_URL", nats.url()),
                ("TALLY_RELAY_SLOT", db_name.to_owned()),
                ("TALLY_RELAY_METRICS_ADDR", addrs[1].clone()),
            ],
        ),
        (
            "tally-updater",
            vec![
                ("DATABASE_URL", url("tally_updater")),
                ("NATS_URL", nats.url()),
                ("TALLY_UPDATER_METRICS_ADDR", addrs[2].clone()),
            ],
        ),
    ]
}

#[tokio::test]
async fn each_replica_names_itself_to_postgres_as_its_service_and_instance() {
    // Arrange
    let replicas = Replicas::start().await;

    // Act
    let names: HashSet<String> = replicas
        .db
        .query(
            "SELECT application_name FROM pg_stat_activity WHERE datname = $1",
            &[&replicas.db_name],
        )
        .await
        .expect("reading pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect();
    // The relay's slot has a streaming backend once the relay has started replication.
    let streaming: String = TestApp::eventually(Duration::from_secs(30), || async {
        replicas
            .db
            .query_opt(
                "SELECT application_name FROM relay_slots
                 WHERE slot_name = $1 AND application_name IS NOT NULL",
                &[&replicas.db_name],
            )
            .await
            .expect("reading relay_slots")
            .map(|row| row.get(0))
    })
    .await
    .expect("the slot's streaming backend");

    // Assert
    for (service, index) in [("tally-api", 0), ("tally-updater", 2)] {
        let expected = format!("{service}/{}", replicas.instance(index));
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    assert_eq!(streaming, format!("tally-relay/{}", replicas.instance(1)));
    replicas.stop().await;
}

#[tokio::test]
async fn the_relay_and_the_updater_name_themselves_to_nats_as_their_service_and_instance() {
    // Arrange
    let replicas = Replicas::start().await;

    // Act
    let names: HashSet<String> = replicas.nats.connection_names().await.into_iter().collect();

    // Assert
    for (service, index) in [("tally-relay", 1), ("tally-updater", 2)] {
        let expected = format!("{service}/{}", replicas.instance(index));
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    replicas.stop().await;
}

#[tokio::test]
async fn the_metrics_of_every_service_name_its_instance_in_an_info_metric() {
    // Arrange
    let replicas = Replicas::start().await;
    let endpoints = [
        ("api", format!("{}/metrics", replicas.api_url)),
        ("relay", replicas.relay_metrics.clone()),
        ("updater", replicas.updater_metrics.clone()),
    ];

    for (index, (service, endpoint)) in endpoints.iter().enumerate() {
        // Act
        let text = reqwest::get(endpoint)
            .await
            .and_then(|answer| answer.error_for_status())
            .expect("reading /metrics")
            .text()
            .await
            .expect("the metrics' text");

        // Assert
        let info = format!(
            "tally_{service}_instance_info{{tally_instance=\"{}\"}} 1",
            replicas.instance(index)
        );
        assert!(
            text.lines().any(|line| line == info),
            "{endpoint} lacks {info}:\n{text}"
        );
    }
    replicas.stop().await;
}

#[tokio::test]
async fn every_log_line_of_every_service_starts_with_its_instance() {
    // Arrange: the services run, then stop, so their shutdown lines are in the logs too.
    let mut replicas = Replicas::start().await;
    replicas.terminate().await;

    for (name, process) in &replicas.services {
        // Act
        let log = process.log();

        // Assert
        let prefix = format!("instance={name} ");
        // A record starts with the prefix or, without it, with its timestamp; other lines
        // continue a multi-line message (e.g. a Postgres error's DETAIL line).
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| {
                line.starts_with("instance=") || line.starts_with(|c: char| c.is_ascii_digit())
            })
            .collect();
        assert!(!lines.is_empty(), "{name} logged nothing");
        let others: Vec<&&str> = lines.iter().filter(|l| !l.starts_with(&prefix)).collect();
        assert!(others.is_empty(), "lines without {prefix:?}: {others:?}");
    }
    replicas.stop().await;
}

#[tokio::test]
async fn an_instance_name_that_is_not_printable_ascii_stops_each_service_naming_the_variable() {
    // Arrange
    let url = |role| postgres().url_as(role, "postgres");
    let services = [
        (
            "tally-api",
            vec![
                ("DATABASE_URL", url("tally_api")),
                ("TALLY_JWT_SECRET", JWT_SECRET.to_owned()),
                ("TALLY_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ],
        ),
        ("tally-relay", vec![("DATABASE_URL", url("tally_relay"))]),
        (
            "tally-updater",
            vec![("DATABASE_URL", url("tally_updater"))],
        ),
    ];

    for (binary, mut env) in services {
        // Act
        env.push(("TALLY_INSTANCE", "web 3\u{7}".to_owned()));
        let mut process = ServiceProcess::spawn(binary, &env);
        let exited = TestApp::eventually(Duration::from_secs(30), || {
            let exited = process.has_exited();
            async move { exited.then_some(()) }
        })
        .await;

        // Assert
        assert!(
            exited.is_some(),
            "{binary} started with a bad TALLY_INSTANCE"
        );
        let log = process.log();
        assert!(
            log.contains("TALLY_INSTANCE") && log.contains("printable ASCII"),
            "{binary} did not name TALLY_INSTANCE and its rule: {log}"
        );
    }
}
