//! tally's test harness: a real Postgres (one cluster per test process, a fresh database per
//! test) and a real nats-server with JetStream (one per test), both on free loopback ports,
//! with the real api, relay and updater running in-process against them.
//!
//! Set `TALLY_TEST_PG_URL` (a superuser URL) to reuse a running cluster instead of starting
//! one; `TALLY_TEST_PG_BINDIR` and `TALLY_TEST_NATS_SERVER` point at the binaries to start
//! (`./dev test` sets them).

pub mod cluster;
pub mod process;
pub mod sse;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use cluster::{NatsServer, postgres};

/// The key test tokens are signed with (HS256).
pub const JWT_SECRET: &str = "tally-test-secret-tally-test-secret-0123456789";

/// One test's complete tally: its own database and NATS, and the three services.
#[derive(Debug)]
pub struct TestApp {
    /// Base URL of the api, e.g. `http://127.0.0.1:41234`.
    pub api_url: String,
    /// This test's database.
    pub db_name: String,
    /// A superuser connection to this test's database, for assertions.
    pub db: tokio_postgres::Client,
    /// This test's nats-server.
    pub nats: NatsServer,
    /// An HTTP client for the api.
    pub http: reqwest::Client,
    slot: String,
    stop: CancellationToken,
    services: Vec<JoinHandle<()>>,
}

/// An updater a test started with [`TestApp::spawn_updater`].
#[derive(Debug)]
pub struct SpawnedUpdater {
    /// Where its `/metrics` are served.
    pub metrics_addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SpawnedUpdater {
    /// Stops it gracefully (as SIGTERM would) and waits until it has.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the updater panicked");
    }

    /// Waits until it returned by itself (e.g. through a test hook).
    pub async fn finished(self) {
        self.task.await.expect("the updater panicked");
    }
}

fn updater_config(db_name: &str, nats: &NatsServer) -> tally_updater::Config {
    let mut config =
        tally_updater::Config::new(postgres().url_as("tally_updater", db_name), nats.url());
    config.batch_wait = Duration::from_millis(20);
    config.metrics_addr = "127.0.0.1:0".parse().expect("a socket address");
    config
}

/// The api's configuration in tests: port 0, the test key, a small pool, and no write rate
/// limit (tests that exercise the limit set their own).
pub fn api_config(database_url: String) -> tally_api::Config {
    let mut config = tally_api::Config::new(database_url, JWT_SECRET);
    config.http_addr = "127.0.0.1:0".parse().expect("a socket address");
    config.db_pool_size = 8;
    config.write_rate_per_sec = 0;
    config
}

/// Connects to `url`, driving the connection on a background task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("connecting to {url}: {err}"));
    tokio::spawn(connection);
    client
}

impl TestApp {
    /// Creates a fresh database, migrates it, starts a nats-server and the three services.
    pub async fn spawn() -> TestApp {
        Self::start(true, |_| {}).await
    }

    /// Like [`TestApp::spawn`], with the api's configuration changed by `configure` first
    /// (it starts from [`api_config`]).
    pub async fn spawn_with_api(configure: impl FnOnce(&mut tally_api::Config)) -> TestApp {
        Self::start(true, configure).await
    }

    /// Like [`TestApp::spawn`] but without the in-process updater, for tests that start their
    /// own (several, or with test hooks) with [`TestApp::spawn_updater`].
    pub async fn spawn_without_updater() -> TestApp {
        Self::start(false, |_| {}).await
    }

    async fn start(with_updater: bool, configure: impl FnOnce(&mut tally_api::Config)) -> TestApp {
        let pg = postgres();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("tally_test_{}", &id[..16]);
        let admin = connect(&pg.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("creating the test database");
        let mut db = connect(&pg.url(&db_name)).await;
        tally_sql::migrate(&mut db).await.expect("migrating");

        let nats = NatsServer::start().await;
        let stop = CancellationToken::new();
        let mut services = Vec::new();

        let mut relay_config =
            tally_relay::Config::new(pg.url_as("tally_relay", &db_name), nats.url());
        relay_config.slot = db_name.clone();
        relay_config.metrics_addr = "127.0.0.1:0".parse().expect("a socket address");
        let relay = tally_relay::Relay::build(relay_config)
            .await
            .expect("building the relay");
        let token = stop.clone();
        services.push(tokio::spawn(async move {
            if let Err(err) = relay.run_until_stopped(token.cancelled_owned()).await {
                panic!("relay failed: {err}");
            }
        }));

        if with_updater {
            let updater = tally_updater::Updater::build(updater_config(&db_name, &nats))
                .await
                .expect("building the updater");
            let token = stop.clone();
            services.push(tokio::spawn(
                updater.run_until_stopped(token.cancelled_owned()),
            ));
        }

        let mut config = api_config(pg.url_as("tally_api", &db_name));
        config.nats_url = nats.url();
        configure(&mut config);
        let api = tally_api::Application::build(config)
            .await
            .expect("building the api");
        let api_url = format!("http://{}", api.local_addr());
        let token = stop.clone();
        services.push(tokio::spawn(async move {
            api.run_until_stopped(token.cancelled_owned())
                .await
                .expect("api server failed");
        }));

        TestApp {
            api_url,
            db_name: db_name.clone(),
            db,
            nats,
            http: reqwest::Client::new(),
            slot: db_name,
            stop,
            services,
        }
    }

    /// The configuration the harness runs its updater with (metrics on a free port).
    pub fn updater_config(&self) -> tally_updater::Config {
        updater_config(&self.db_name, &self.nats)
    }

    /// Starts one more updater (built from [`TestApp::updater_config`], maybe changed);
    /// updaters with the same consumer name share the durable consumer.
    pub async fn spawn_updater(&self, updater: tally_updater::Updater) -> SpawnedUpdater {
        let stop = CancellationToken::new();
        let metrics_addr = updater.metrics_addr();
        let task = tokio::spawn(updater.run_until_stopped(stop.clone().cancelled_owned()));
        SpawnedUpdater {
            metrics_addr,
            stop,
            task,
        }
    }

    /// Creates a post by `author` through the api and returns its id.
    pub async fn create_post(&self, author: &str) -> String {
        let response = self
            .request(reqwest::Method::POST, "/v1/posts", Some(author))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("creating a post");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.expect("a post");
        body["id"].as_str().expect("a post id").to_owned()
    }

    /// Likes `post_id` as `user_id` through the api; the like's event id (None when it was
    /// liked already).
    pub async fn like(&self, user_id: &str, post_id: &str) -> Option<String> {
        let response = self
            .request(reqwest::Method::POST, "/v1/likes", Some(user_id))
            .json(&serde_json::json!({ "post_id": post_id }))
            .send()
            .await
            .expect("liking a post");
        assert!(
            response.status().is_success(),
            "liking answered {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await.expect("a like");
        body["event_id"].as_str().map(str::to_owned)
    }

    /// Comments on `post_id` as `user_id` through the api; the comment's id.
    pub async fn comment(&self, user_id: &str, post_id: &str, body: &str) -> String {
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/posts/{post_id}/comments"),
                Some(user_id),
            )
            .json(&serde_json::json!({ "body": body }))
            .send()
            .await
            .expect("commenting");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.expect("a comment");
        body["id"].as_str().expect("a comment id").to_owned()
    }

    /// Opens `GET /v1/live?ids=...` and asserts it is an event stream.
    pub async fn live(&self, ids: &[&str]) -> sse::SseReader {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/live?ids={}", ids.join(",")),
                None,
            )
            .send()
            .await
            .expect("opening a live stream");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "text/event-stream");
        sse::SseReader::new(response)
    }

    /// A valid bearer token for `user_id`.
    pub fn token(&self, user_id: &str) -> String {
        tally_api::auth::TokenKeys::hs256(JWT_SECRET.as_bytes())
            .issue(user_id, Duration::from_secs(3600))
            .expect("signing a test token")
    }

    /// `METHOD {api_url}{path}` as `user_id` (None: anonymous).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        user_id: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.api_url));
        match user_id {
            Some(user) => builder.bearer_auth(self.token(user)),
            None => builder,
        }
    }

    /// `GET {path}` as `user_id` (None: anonymous): the status and the JSON body (null when
    /// the body is not JSON).
    pub async fn get_json(
        &self,
        path: &str,
        user_id: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .request(reqwest::Method::GET, path, user_id)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }

    /// Polls `probe` until it returns Some or `timeout` passes.
    pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(value) = probe().await {
                return Some(value);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts one more api on this test's database and NATS (a second instance behind the
    /// same load balancer), configured as the first then changed by `configure`; it stops
    /// with the rest. Its base URL.
    pub async fn spawn_another_api(
        &mut self,
        configure: impl FnOnce(&mut tally_api::Config),
    ) -> String {
        let mut config = api_config(postgres().url_as("tally_api", &self.db_name));
        config.nats_url = self.nats.url();
        configure(&mut config);
        let api = tally_api::Application::build(config)
            .await
            .expect("building the second api");
        let url = format!("http://{}", api.local_addr());
        let token = self.stop.clone();
        self.services.push(tokio::spawn(async move {
            api.run_until_stopped(token.cancelled_owned())
                .await
                .expect("api server failed");
        }));
        url
    }

    /// The value of one counter series of the api's `/metrics`, named with its labels
    /// (`tally_api_counts_cache_lookups_total{result="miss"}`); None when absent.
    pub async fn counter(&self, series: &str) -> Option<u64> {
        let metrics = self
            .request(reqwest::Method::GET, "/metrics", None)
            .send()
            .await
            .expect("the metrics")
            .text()
            .await
            .expect("metrics text");
        let prefix = format!("{series} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.parse().ok())
    }

    /// A scalar from this test's database.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// Stops the services (gracefully, as SIGTERM would) and drops this test's slot.
    pub async fn stop(self) {
        self.stop.cancel();
        for service in self.services {
            service.await.expect("a service panicked");
        }
        let _ = self
            .db
            .execute("SELECT pg_drop_replication_slot($1)", &[&self.slot])
            .await;
    }
}

/// Reads a problem answer: asserts the RFC 9457 media type and fields (a status that matches
/// the response's), and returns the status and the body.
pub async fn problem(response: reqwest::Response) -> (reqwest::StatusCode, serde_json::Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: serde_json::Value = response
        .json()
        .await
        .unwrap_or_else(|err| panic!("status {status}: the body is not JSON ({err})"));
    assert_eq!(
        content_type, "application/problem+json",
        "status {status}: {body}"
    );
    assert_eq!(body["status"], status.as_u16(), "{body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "no {field} in {body}");
    }
    (status, body)
}
