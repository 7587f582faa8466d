//! Starts the real servers the tests run against: one Postgres cluster per test process and
//! one nats-server per test, on free loopback ports, cleaned up when the process exits.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A running Postgres cluster with `wal_level=logical`.
#[derive(Debug)]
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

/// A free loopback port (racy in theory; the servers fail loudly if it was taken).
pub fn free_port() -> u16 {
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

fn pg_bindir() -> PathBuf {
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
    let bindir = pg_bindir();
    let base = std::env::temp_dir().join(format!("tally-test-pg-{}", std::process::id()));
    let data = base.join("data");
    std::fs::create_dir_all(&base).expect("creating the cluster directory");
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&base);
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
         -c max_connections=600 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    );
    let mut pg_ctl = pg_command(&bindir.join("pg_ctl"));
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(base.join("server.log"))
        .args(["-o", &options, "-w", "-t", "60", "start"]);
    run(pg_ctl, "pg_ctl start");
    watch_and_clean(&format!(
        "{} -D {} -m immediate stop; rm -rf {}",
        pg_prefix(&bindir.join("pg_ctl")),
        data.display(),
        base.display()
    ));
    PgCluster {
        host_port: format!("127.0.0.1:{port}"),
        superuser: "tally".into(),
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
    child: Option<tokio::process::Child>,
}

impl NatsServer {
    /// Starts a nats-server on a free port and waits until it accepts connections.
    pub async fn start() -> NatsServer {
        let store =
            std::env::temp_dir().join(format!("tally-test-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut server = NatsServer {
            port: free_port(),
            store,
            child: None,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let binary =
            std::env::var("TALLY_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = tokio::process::Command::new(&binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
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
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
