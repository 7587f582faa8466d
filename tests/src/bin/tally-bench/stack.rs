//! The system under test: a fresh database in the given cluster, a private nats-server, and
//! the three services' release binaries as child processes, so each one's peak memory can be
//! read from `/proc` and the relay and updater can be stopped to build a backlog.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tally_tests::{NatsServer, connect};
use tokio::process::{Child, Command};

/// The slot of the benchmark database; slot names are cluster-wide, so it must not be the
/// dev stack's.
pub const SLOT: &str = "tally_bench";
/// The updater's durable consumer.
const CONSUMER: &str = "tally-bench-updater";
/// The key the api verifies bench tokens with.
pub const JWT_SECRET: &str = "tally-bench-secret-tally-bench-secret-0123456789";

/// A running service binary and the largest resident set seen for it so far.
#[derive(Debug)]
struct Service {
    child: Child,
    pid: u32,
}

/// An api started beside the bench's own (see [`Stack::spawn_api_via`]); dropping it kills it.
#[derive(Debug)]
pub struct ExtraApi {
    pub url: String,
    _service: Service,
}

/// Waits up to 30 s for the api at `api_url` to answer `/healthz`.
async fn wait_healthy(api_url: &str, out: &Path) -> anyhow::Result<()> {
    let health = format!("{api_url}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(&health).await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the api did not become healthy; see its log in {}",
        out.display()
    )
}

/// Peak resident memory (VmHWM) per service, in KiB.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    pub api_kib: u64,
    pub relay_kib: u64,
    pub updater_kib: u64,
}

/// The bench's api's `TALLY_DB_POOL_SIZE`.
const API_POOL_SIZE: &str = "32";

#[derive(Debug)]
pub struct Stack {
    pub db_name: String,
    /// A superuser connection to the benchmark database.
    pub db: tokio_postgres::Client,
    /// `postgres://tally@host:port/<db>` as the cluster superuser, for pgbench.
    pub owner_url: String,
    pub nats: NatsServer,
    pub api_url: String,
    pub http_addr: String,
    /// Where the relay serves `/metrics` (its per-stage counters).
    pub relay_metrics: String,
    /// Where the updater serves `/metrics` (its stage counters).
    pub updater_metrics: String,
    host: String,
    port: u16,
    user: String,
    bin_dir: PathBuf,
    out: PathBuf,
    api: Option<Service>,
    relay: Option<Service>,
    updater: Option<Service>,
    memory: Memory,
}

impl Stack {
    pub async fn start(pg_url: &str, bin_dir: &Path, out: &Path) -> anyhow::Result<Stack> {
        for bin in ["tally-api", "tally-relay", "tally-updater"] {
            if !bin_dir.join(bin).is_file() {
                bail!(
                    "{} is missing: build with `cargo build --release --bins`",
                    bin_dir.join(bin).display()
                );
            }
        }
        let config: tokio_postgres::Config = pg_url.parse().context("TALLY_BENCH_PG_URL")?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_owned();

        let db_name = format!("tally_bench_{}", std::process::id());
        let admin = connect(pg_url).await;
        // A slot left by an interrupted run would pin WAL and block the name.
        let _ = admin
            .execute("SELECT pg_drop_replication_slot($1)", &[&SLOT])
            .await;
        let _ = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = 'tally_bench_baseline'",
                &[],
            )
            .await;
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .context("creating the benchmark database")?;
        let owner_url = format!("postgres://{user}@{host}:{port}/{db_name}");
        let mut db = connect(&owner_url).await;
        tally_sql::migrate(&mut db).await.context("migrating")?;
        db.batch_execute(include_str!("../../../bench/setup.sql"))
            .await
            .context("creating the benchmark's helper objects")?;
        // Freshly inserted rows are unvacuumed, unanalysed and without hint bits: whichever
        // load read them first would pay for that. A database in service has been vacuumed.
        db.batch_execute("VACUUM (ANALYZE)")
            .await
            .context("vacuuming the benchmark database")?;

        let nats = NatsServer::start().await;
        let http_addr = format!("127.0.0.1:{}", tally_tests::cluster::free_port());
        let mut stack = Stack {
            db_name,
            db,
            owner_url,
            nats,
            api_url: format!("http://{http_addr}"),
            http_addr,
            relay_metrics: format!("127.0.0.1:{}", tally_tests::cluster::free_port()),
            updater_metrics: format!("127.0.0.1:{}", tally_tests::cluster::free_port()),
            host,
            port,
            user,
            bin_dir: bin_dir.to_owned(),
            out: out.to_owned(),
            api: None,
            relay: None,
            updater: None,
            memory: Memory::default(),
        };
        stack.start_relay().await?;
        stack.start_updater().await?;
        stack.start_api().await?;
        Ok(stack)
    }

    fn role_url(&self, role: &str) -> String {
        format!(
            "postgres://{role}@{}:{}/{}",
            self.host, self.port, self.db_name
        )
    }

    fn spawn(&self, name: &str, envs: &[(&str, String)]) -> anyhow::Result<Service> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out.join(format!("{name}.log")))?;
        let mut command = Command::new(self.bin_dir.join(name));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Service { child, pid })
    }

    /// Postgres' `host:port`.
    pub fn pg_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A second api, on a free port, reaching Postgres through `127.0.0.1:<pg_port>` (a
    /// proxy's) with a small pool. It logs into `tally-api.log` with the bench's api, its lines
    /// starting `instance=<instance>`, and stops when dropped.
    pub async fn spawn_api_via(&self, pg_port: u16, instance: &str) -> anyhow::Result<ExtraApi> {
        let url = format!("postgres://tally_api@127.0.0.1:{pg_port}/{}", self.db_name);
        self.spawn_extra_api(url, instance, &[("TALLY_DB_POOL_SIZE", "4".to_owned())])
            .await
    }

    /// A second api like the bench's own (same pool), with `envs` on top, e.g. its cache off.
    pub async fn spawn_api_with(
        &self,
        instance: &str,
        envs: &[(&str, String)],
    ) -> anyhow::Result<ExtraApi> {
        let mut envs = envs.to_vec();
        envs.push(("TALLY_DB_POOL_SIZE", API_POOL_SIZE.to_owned()));
        self.spawn_extra_api(self.role_url("tally_api"), instance, &envs)
            .await
    }

    async fn spawn_extra_api(
        &self,
        database_url: String,
        instance: &str,
        envs: &[(&str, String)],
    ) -> anyhow::Result<ExtraApi> {
        let addr = format!("127.0.0.1:{}", tally_tests::cluster::free_port());
        let mut all = vec![
            ("DATABASE_URL", database_url),
            ("TALLY_HTTP_ADDR", addr.clone()),
            ("TALLY_JWT_SECRET", JWT_SECRET.to_owned()),
            ("TALLY_WRITE_RATE_PER_SEC", "0".to_owned()),
            ("TALLY_INSTANCE", instance.to_owned()),
            ("NATS_URL", self.nats.url()),
        ];
        all.extend_from_slice(envs);
        let service = self.spawn("tally-api", &all)?;
        let url = format!("http://{addr}");
        wait_healthy(&url, &self.out).await?;
        Ok(ExtraApi {
            url,
            _service: service,
        })
    }

    pub async fn start_api(&mut self) -> anyhow::Result<()> {
        let service = self.spawn(
            "tally-api",
            &[
                ("DATABASE_URL", self.role_url("tally_api")),
                ("TALLY_HTTP_ADDR", self.http_addr.clone()),
                ("TALLY_JWT_SECRET", JWT_SECRET.to_owned()),
                ("TALLY_DB_POOL_SIZE", API_POOL_SIZE.to_owned()),
                // Load generators are one user hammering: rate limiting would measure itself.
                ("TALLY_WRITE_RATE_PER_SEC", "0".to_owned()),
                ("NATS_URL", self.nats.url()),
                // Scenario 8 holds 1,000 live streams open beside the load generator's.
                ("TALLY_HTTP_MAX_CONNECTIONS", "2048".to_owned()),
            ],
        )?;
        self.api = Some(service);
        wait_healthy(&self.api_url, &self.out).await
    }

    pub async fn start_relay(&mut self) -> anyhow::Result<()> {
        let service = self.spawn(
            "tally-relay",
            &[
                ("DATABASE_URL", self.role_url("tally_relay")),
                ("NATS_URL", self.nats.url()),
                ("TALLY_RELAY_SLOT", SLOT.to_owned()),
                ("TALLY_RELAY_METRICS_ADDR", self.relay_metrics.clone()),
            ],
        )?;
        self.relay = Some(service);
        // Ready once it streams the slot.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let active = self
                .db
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                    &[&SLOT],
                )
                .await?;
            if active.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the relay did not start streaming; see its log in {}",
            self.out.display()
        )
    }

    pub async fn start_updater(&mut self) -> anyhow::Result<()> {
        let service = self.spawn(
            "tally-updater",
            &[
                ("DATABASE_URL", self.role_url("tally_updater")),
                ("NATS_URL", self.nats.url()),
                ("TALLY_UPDATER_CONSUMER", CONSUMER.to_owned()),
                ("TALLY_UPDATER_METRICS_ADDR", self.updater_metrics.clone()),
            ],
        )?;
        self.updater = Some(service);
        Ok(())
    }

    pub async fn stop_relay(&mut self) -> anyhow::Result<()> {
        if let Some(service) = self.relay.take() {
            self.memory.relay_kib = self.memory.relay_kib.max(stop(service).await?);
        }
        Ok(())
    }

    pub async fn stop_updater(&mut self) -> anyhow::Result<()> {
        if let Some(service) = self.updater.take() {
            self.memory.updater_kib = self.memory.updater_kib.max(stop(service).await?);
        }
        Ok(())
    }

    /// The running api's process id.
    pub fn api_pid(&self) -> Option<u32> {
        self.api.as_ref().map(|service| service.pid)
    }

    /// The running relay's peak resident memory so far (VmHWM), in KiB.
    pub fn relay_peak_kib(&self) -> u64 {
        self.relay
            .as_ref()
            .map_or(0, |service| peak_kib(service.pid))
    }

    /// The running updater's peak resident memory so far (VmHWM), in KiB.
    pub fn updater_peak_kib(&self) -> u64 {
        self.updater
            .as_ref()
            .map_or(0, |service| peak_kib(service.pid))
    }

    /// Events in the stream and events the updater has yet to apply (pending + unacked).
    pub async fn stream_state(&self) -> anyhow::Result<(u64, u64)> {
        let jetstream = self.nats.jetstream().await;
        let mut stream = jetstream
            .get_stream(tally_sql::STREAM)
            .await
            .context("getting the stream")?;
        let messages = stream.info().await?.state.messages;
        let pending = match stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(CONSUMER)
            .await
        {
            Ok(mut consumer) => {
                let info = consumer.info().await?;
                info.num_pending + info.num_ack_pending as u64
            }
            // Not created yet: nothing of the stream was applied.
            Err(_) => messages,
        };
        Ok((messages, pending))
    }

    /// Waits until every outbox row is in the stream and applied, so one scenario's backlog
    /// does not slow the next.
    pub async fn drain(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let outbox = self.count("SELECT count(*) FROM outbox").await?;
            let (messages, pending) = self.stream_state().await?;
            if messages >= outbox && pending == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the pipeline did not drain: {outbox} outbox rows, {messages} in the stream, {pending} pending"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<u64> {
        let row = self.db.query_one(sql, &[]).await.context(sql.to_owned())?;
        let value: i64 = row.get(0);
        Ok(value.try_into().unwrap_or(0))
    }

    /// Stops every service gracefully and returns their peak memory.
    pub async fn stop(mut self) -> Memory {
        if let Some(service) = self.api.take() {
            match stop(service).await {
                Ok(kib) => self.memory.api_kib = self.memory.api_kib.max(kib),
                Err(err) => eprintln!("stopping the api: {err:#}"),
            }
        }
        if let Err(err) = self.stop_relay().await {
            eprintln!("stopping the relay: {err:#}");
        }
        if let Err(err) = self.stop_updater().await {
            eprintln!("stopping the updater: {err:#}");
        }
        let _ = self
            .db
            .execute("SELECT pg_drop_replication_slot($1)", &[&SLOT])
            .await;
        drop(self.db);
        let admin_url = format!(
            "postgres://{}@{}:{}/postgres",
            self.user, self.host, self.port
        );
        let admin = connect(&admin_url).await;
        if let Err(err) = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .await
        {
            eprintln!("dropping {}: {err}", self.db_name);
        }
        self.memory
    }
}

/// The peak resident set of a process, from `/proc/<pid>/status`.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// SIGTERM, then waits for a clean exit; returns the peak memory read just before.
async fn stop(mut service: Service) -> anyhow::Result<u64> {
    let peak = peak_kib(service.pid);
    let status = Command::new("kill")
        .args(["-TERM", &service.pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        bail!("kill -TERM {} failed", service.pid);
    }
    match tokio::time::timeout(Duration::from_secs(30), service.child.wait()).await {
        Ok(exit) => {
            exit?;
        }
        Err(_) => {
            service.child.kill().await?;
            bail!("pid {} did not stop within 30 s", service.pid);
        }
    }
    Ok(peak)
}
