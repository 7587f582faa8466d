//! Starts the real servers the tests run against: one Postgres cluster per test process and
//! one nats-server per test, on free loopback ports, cleaned up when the process exits.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A running Postgres cluster with `wal_level=logical`.
#[derive(Debug, Clone)]
pub struct PgCluster {
    host_port: String,
    superuser: String,
}

impl PgCluster {
    /// A superuser URL for `database`.
    pub fn url(&self, database: &str) -> String {
        self.url_as(&self.superuser, database)
    }

    /// A URL for `database` as `role` (the cluster trusts loopback connections).
    pub fn url_as(&self, role: &str, database: &str) -> String {
        format!("postgres://{role}@{}/{database}", self.host_port)
    }

    /// Creates a database with a random name, migrates it, and returns its name with a
    /// superuser connection to it.
    pub async fn fresh_database(&self) -> (String, tokio_postgres::Client) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("tally_test_{}", &id[..16]);
        let admin = crate::connect(&self.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        let mut db = crate::connect(&self.url(&name)).await;
        tally_sql::migrate(&mut db).await.expect("migrating");
        (name, db)
    }
}

/// The process-wide cluster, started on first use.
pub fn postgres() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match std::env::var("TALLY_TEST_PG_URL") {
        Ok(url) => reuse(&url),
        Err(_) => start_postgres(),
    })
}

fn reuse(url: &str) -> PgCluster {
    let config: tokio_postgres::Config = url
        .parse()
        .expect("TALLY_TEST_PG_URL is not a Postgres URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    PgCluster {
        host_port: format!("{host}:{port}"),
        superuser: config.get_user().unwrap_or("postgres").to_owned(),
    }
}

/// A free loopback port, picked at random below the kernel's ephemeral range (32768 and up
/// on Linux). Ports in that range are handed out as the local ports of outgoing connections,
/// and the tests open thousands, so a port found free there can be taken before the server
/// binds it (and a server restarted on its port after a kill would find it gone). Here only
/// another test picking the same port can take it: `pg_ctl start` then fails, and a
/// nats-server's start sees another server's greeting and picks again.
pub fn free_port() -> u16 {
    for _ in 0..1_000 {
        let port = fastrand::u16(20_000..32_768);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The directory of the Postgres server binaries (initdb, pg_ctl, pg_recvlogical).
pub fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("TALLY_TEST_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect(
        "no Postgres found: run ./dev test, or set TALLY_TEST_PG_BINDIR or TALLY_TEST_PG_URL",
    )
}

/// Postgres refuses to run as root, so as root its commands run as `postgres`.
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_postgres() -> PgCluster {
    let base = std::env::temp_dir().join(format!("tally-test-pg-{}", std::process::id()));
    let (cluster, bindir, data) = init_and_start(&base, "");
    watch_and_clean(&format!(
        "{} -D {} -m immediate stop; rm -rf {}",
        pg_prefix(&bindir.join("pg_ctl")),
        data.display(),
        base.display()
    ));
    cluster
}

/// Creates a cluster under `base` and starts it with the test settings plus `extra`
/// (`-c name=value ...`, later settings win). Returns it with its bindir and data dir.
fn init_and_start(base: &Path, extra: &str) -> (PgCluster, PathBuf, PathBuf) {
    let bindir = pg_bindir();
    let data = base.join("data");
    std::fs::create_dir_all(base).expect("creating the cluster directory");
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(base);
                c
            },
            "chown",
        );
    }
    let mut initdb = pg_command(&bindir.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "tally",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(initdb, "initdb");

    let port = free_port();
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
         -c wal_level=logical -c max_replication_slots=200 -c max_wal_senders=200 \
         -c max_connections=600 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         {extra}"
    );
    // Kept so a private cluster can be started again with the same settings.
    std::fs::write(base.join("options"), &options).expect("writing the cluster's options");
    pg_ctl_start(&bindir, &data, base);
    (
        PgCluster {
            host_port: format!("127.0.0.1:{port}"),
            superuser: "tally".into(),
        },
        bindir,
        data,
    )
}

fn pg_ctl_start(bindir: &Path, data: &Path, base: &Path) {
    let options =
        std::fs::read_to_string(base.join("options")).expect("reading the cluster's options");
    let mut pg_ctl = pg_command(&bindir.join("pg_ctl"));
    pg_ctl
        .arg("-D")
        .arg(data)
        .arg("-l")
        .arg(base.join("server.log"))
        .args(["-o", &options, "-w", "-t", "60", "start"]);
    run(pg_ctl, "pg_ctl start");
}

/// A Postgres cluster private to one test, which it may stop, crash and restart without
/// disturbing the tests sharing the process-wide cluster. Removed when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    cluster: PgCluster,
    bindir: PathBuf,
    data: PathBuf,
    base: PathBuf,
}

impl PrivatePostgres {
    /// initdb and start a cluster with the test settings plus `extra` (`-c name=value ...`,
    /// e.g. `-c wal_level=replica`). Blocks for a second or two: call it through
    /// `spawn_blocking` or accept the stall.
    pub fn start(extra: &str) -> PrivatePostgres {
        let base = std::env::temp_dir().join(format!(
            "tally-test-pg-private-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let (cluster, bindir, data) = init_and_start(&base, extra);
        watch_and_clean(&format!(
            "{} -D {} -m immediate stop; rm -rf {}",
            pg_prefix(&bindir.join("pg_ctl")),
            data.display(),
            base.display()
        ));
        PrivatePostgres {
            cluster,
            bindir,
            data,
            base,
        }
    }

    /// URLs and databases of this cluster.
    pub fn cluster(&self) -> &PgCluster {
        &self.cluster
    }

    /// Stops the cluster: `fast` (a clean shutdown) or `immediate` (as after a crash).
    pub fn stop(&self, mode: &str) {
        let mut pg_ctl = pg_command(&self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(pg_ctl, "pg_ctl stop");
    }

    /// Starts the stopped cluster again on the same port.
    pub fn start_again(&self) {
        pg_ctl_start(&self.bindir, &self.data, &self.base);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut pg_ctl = pg_command(&self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = pg_ctl.status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn pg_prefix(program: &Path) -> String {
    if is_root() {
        format!("runuser -u postgres -- {}", program.display())
    } else {
        program.display().to_string()
    }
}

/// Runs `cleanup` in a detached shell once this process has exited, however it exits:
/// Rust runs no destructors for statics, and a killed test run must not leak servers.
fn watch_and_clean(cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A nats-server with JetStream, private to one test; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    jetstream: bool,
    /// The HTTP monitoring port (`-m`), when asked for with [`NatsServer::start_monitored`].
    monitor_port: Option<u16>,
    child: Option<tokio::process::Child>,
}

impl NatsServer {
    /// Starts a nats-server on a free port and waits until it accepts connections.
    pub async fn start() -> NatsServer {
        Self::start_with(true).await
    }

    /// A nats-server without JetStream, to test the message naming that misconfiguration.
    pub async fn start_without_jetstream() -> NatsServer {
        Self::start_with(false).await
    }

    /// A nats-server that also serves its HTTP monitoring endpoints (`/connz`: who is
    /// connected, under which client name).
    pub async fn start_monitored() -> NatsServer {
        Self::start_with_options(true, true).await
    }

    async fn start_with(jetstream: bool) -> NatsServer {
        Self::start_with_options(jetstream, false).await
    }

    async fn start_with_options(jetstream: bool, monitored: bool) -> NatsServer {
        let store =
            std::env::temp_dir().join(format!("tally-test-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut server = NatsServer {
            port: free_port(),
            store,
            jetstream,
            monitor_port: monitored.then(free_port),
            child: None,
        };
        // A free port can be taken again before the server binds it (by another test's
        // server, or as the local port of some connection): then the server exits, and
        // whatever holds the port must not pass for it. Another port is tried.
        for _ in 0..5 {
            if server.launch().await {
                return server;
            }
            server.port = free_port();
            server.monitor_port = server.monitor_port.map(|_| free_port());
        }
        panic!("nats-server exited at start on five free ports in a row");
    }

    /// Kills the server (SIGKILL) and waits until it is gone; its store stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts the stopped server again on the same port and store directory.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is still running");
        assert!(
            self.launch().await,
            "nats-server could not start again on port {} (taken meanwhile?)",
            self.port
        );
    }

    /// Starts the server and waits until it accepts connections: true once it does, false
    /// when it exited instead (its port was taken).
    async fn launch(&mut self) -> bool {
        let binary =
            std::env::var("TALLY_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut command = tokio::process::Command::new(&binary);
        if self.jetstream {
            command.arg("-js");
        }
        if let Some(port) = self.monitor_port {
            command.args(["-m", &port.to_string()]);
        }
        // Named after its store, which is unique: the INFO line it greets a client with
        // tells this server from another that holds the port.
        let name = self.name();
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--name",
                &name,
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("starting {binary}: {err} (run ./dev test to install it)")
            });
        if let Some(pid) = child.id() {
            watch_and_clean(&format!(
                "kill -9 {pid} 2>/dev/null; rm -rf {}",
                self.store.display()
            ));
        }
        self.child = Some(child);
        for _ in 0..200 {
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                self.child = None;
                return false;
            }
            if let Some(greeting) = Self::greeting(self.port).await {
                // Anything else (another server, another protocol) holds the port.
                if greeting.contains(&format!("\"server_name\":\"{name}\"")) {
                    return true;
                }
                if let Some(mut child) = self.child.take() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// The server's name: its store directory's, unique to this server.
    fn name(&self) -> String {
        self.store
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// What whatever listens on `port` first says (a NATS server: its INFO line; something
    /// else: maybe nothing), or None when nothing listens there yet.
    async fn greeting(port: u16) -> Option<String> {
        use tokio::io::AsyncBufReadExt;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut line = String::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::BufReader::new(stream).read_line(&mut line),
        )
        .await;
        Some(line)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client names of the connections open now, from the monitoring endpoint `/connz`
    /// (only on a server started with [`NatsServer::start_monitored`]).
    pub async fn connection_names(&self) -> Vec<String> {
        let port = self
            .monitor_port
            .expect("connection_names needs NatsServer::start_monitored");
        let connz: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/connz"))
            .await
            .and_then(|answer| answer.error_for_status())
            .expect("reading /connz")
            .json()
            .await
            .expect("/connz is JSON");
        connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|connection| connection["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// The subjects subscribed to by the connections whose client name starts with
    /// `name_prefix` (e.g. `tally-api/`), from `/connz?subs=1` (only on a server started with
    /// [`NatsServer::start_monitored`]).
    pub async fn subscriptions_of(&self, name_prefix: &str) -> Vec<String> {
        let port = self
            .monitor_port
            .expect("subscriptions_of needs NatsServer::start_monitored");
        let connz: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{port}/connz?subs=1"))
                .await
                .and_then(|answer| answer.error_for_status())
                .expect("reading /connz")
                .json()
                .await
                .expect("/connz is JSON");
        connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
            })
            .flat_map(|c| {
                c["subscriptions_list"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|subject| subject.as_str().map(str::to_owned))
            .collect()
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .expect("connecting to NATS");
        async_nats::jetstream::new(client)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
