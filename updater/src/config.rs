//! The updater's configuration, read from environment variables (or the matching flags), and
//! the command line of the `tally-updater` binary (run, or `reconcile`).

use std::net::SocketAddr;
use std::time::Duration;

use tally_runtime::instance::Instance;
use uuid::Uuid;

/// Default inbox retention: a day longer than the stream's default max age (7 days), so an
/// id is still in the inbox for as long as its event can be redelivered.
pub const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);

/// Everything the updater needs to start. Tests build it with [`Config::new`]; the binary
/// reads it from the environment through clap, which names the variable in any error.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// Postgres connection URL, as the updater's role (tally_updater).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,

    /// NATS server URL.
    #[arg(
        long,
        env = "NATS_URL",
        value_name = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// Name of the durable JetStream consumer; every updater instance shares it.
    #[arg(
        long,
        env = "TALLY_UPDATER_CONSUMER",
        value_name = "TALLY_UPDATER_CONSUMER",
        default_value = "tally-updater"
    )]
    pub consumer: String,

    /// Most events applied in one transaction.
    #[arg(long, env = "TALLY_UPDATER_BATCH_SIZE", value_name = "TALLY_UPDATER_BATCH_SIZE",
          default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// Batch loops run side by side in this instance, each with its own pull stream and
    /// Postgres connection (as separate instances would): more than one transaction in
    /// flight lets Postgres use more than one core.
    #[arg(long, env = "TALLY_UPDATER_WORKERS", value_name = "TALLY_UPDATER_WORKERS",
          default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub workers: u16,

    /// No longer used: a batch takes what has arrived and the next gathers while it commits
    /// (accepted still, so existing deployments start).
    #[arg(long, env = "TALLY_UPDATER_BATCH_WAIT_MS", value_name = "TALLY_UPDATER_BATCH_WAIT_MS",
          default_value = "50", value_parser = parse_millis)]
    pub batch_wait: Duration,

    /// Where `/metrics` (Prometheus text format) is served; port 0 picks a free port.
    #[arg(
        long,
        env = "TALLY_UPDATER_METRICS_ADDR",
        value_name = "TALLY_UPDATER_METRICS_ADDR",
        default_value = "127.0.0.1:9102"
    )]
    pub metrics_addr: SocketAddr,

    /// How long applied event ids stay in the inbox; must exceed the stream's max age.
    #[arg(long, env = "TALLY_UPDATER_INBOX_RETENTION_SECS",
          value_name = "TALLY_UPDATER_INBOX_RETENTION_SECS",
          default_value = "691200", value_parser = parse_secs)]
    pub inbox_retention: Duration,

    /// How long JetStream waits for an ack before redelivering (set when the durable consumer
    /// is created; an existing consumer keeps its own).
    #[arg(long, env = "TALLY_UPDATER_ACK_WAIT_SECS", value_name = "TALLY_UPDATER_ACK_WAIT_SECS",
          default_value = "30", value_parser = parse_secs)]
    pub ack_wait: Duration,

    /// How many times, at least, an event that would make a count negative is delivered
    /// (it may just have overtaken the event it undoes) before it is dead-lettered. It is also
    /// held for twice the consumer's ack wait, and until every earlier event is acked.
    #[arg(
        long,
        env = "TALLY_UPDATER_NEGATIVE_RETRIES",
        value_name = "TALLY_UPDATER_NEGATIVE_RETRIES",
        default_value_t = 5
    )]
    pub negative_retries: u32,

    /// This replica's name: in Postgres' application_name and the NATS client name
    /// (tally-updater/<name>), on every log line and on every metric. Default: the host name
    /// and the process id.
    #[arg(long, env = "TALLY_INSTANCE", value_name = "TALLY_INSTANCE",
          default_value_t = Instance::of_this_process(), value_parser = Instance::parse)]
    pub instance: Instance,
}

impl Config {
    /// The defaults, with the two URLs every deployment sets.
    pub fn new(database_url: String, nats_url: String) -> Self {
        Self {
            database_url,
            nats_url,
            consumer: "tally-updater".into(),
            batch_size: 500,
            workers: 2,
            batch_wait: Duration::from_millis(50),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9102)),
            inbox_retention: DEFAULT_INBOX_RETENTION,
            ack_wait: Duration::from_secs(30),
            negative_retries: 5,
            instance: Instance::of_this_process(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may hold a password: never logged.
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("consumer", &self.consumer)
            .field("batch_size", &self.batch_size)
            .field("workers", &self.workers)
            .field("batch_wait", &self.batch_wait)
            .field("metrics_addr", &self.metrics_addr)
            .field("inbox_retention", &self.inbox_retention)
            .field("ack_wait", &self.ack_wait)
            .field("negative_retries", &self.negative_retries)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// `tally-updater reconcile`: compares `post_counts` with the source tables.
#[derive(Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Postgres connection URL, as the updater's role (tally_updater).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Check only this post.
    #[arg(long, value_name = "POST_ID")]
    pub post: Option<Uuid>,

    /// Repair the drift found (safe while the pipeline runs).
    #[arg(long)]
    pub fix: bool,

    /// The inbox retention the updaters run with: events younger than this that are not in
    /// the inbox count as still in flight, not as drift.
    #[arg(long, env = "TALLY_UPDATER_INBOX_RETENTION_SECS",
          value_name = "TALLY_UPDATER_INBOX_RETENTION_SECS",
          default_value = "691200", value_parser = parse_secs)]
    pub inbox_retention: Duration,
}

impl std::fmt::Debug for ReconcileArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconcileArgs")
            .field("post", &self.post)
            .field("fix", &self.fix)
            .field("inbox_retention", &self.inbox_retention)
            .finish_non_exhaustive()
    }
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "'{value}' is not a positive whole number of milliseconds"
        )),
    }
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "'{value}' is not a positive whole number of seconds"
        )),
    }
}

/// What the binary was asked to do.
#[derive(Debug)]
pub enum Command {
    /// Apply the stream to the counts until SIGTERM (the default).
    Run(Config),
    /// Compare (and with `--fix` repair) the counts.
    Reconcile(ReconcileArgs),
}

#[derive(clap::Parser)]
#[command(
    name = "tally-updater",
    about = "Applies tally's event stream to post_counts; `reconcile` checks and repairs them"
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Apply the event stream to post_counts until SIGTERM (what runs without a subcommand).
    Run(Config),
    /// Compare post_counts with the likes and comments tables; exits 1 on drift, 2 when
    /// --post names no post, 3 when it cannot run (connection, grants).
    Reconcile(ReconcileArgs),
}

impl Command {
    /// Reads the command line and environment, printing clap's message (which names the
    /// offending variable) and exiting on error. Without a subcommand the updater runs.
    pub fn from_env_or_exit() -> Self {
        use clap::Parser;
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
        if !matches!(first, "run" | "reconcile" | "help" | "-h" | "--help") {
            args.insert(1.min(args.len()), "run".into());
        }
        match Cli::parse_from(args).command {
            Sub::Run(config) => Command::Run(config),
            Sub::Reconcile(args) => Command::Reconcile(args),
        }
    }
}
