//! The updater's configuration, read from environment variables (or the matching flags).

use std::time::Duration;

/// Everything the updater needs to start. Tests build it directly; the binary reads it from
/// the environment through clap, which names the variable in any error.
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

    /// How long a pull waits to fill a batch before applying what it has.
    #[arg(long, env = "TALLY_UPDATER_BATCH_WAIT_MS", value_name = "TALLY_UPDATER_BATCH_WAIT_MS",
          default_value = "50", value_parser = parse_millis)]
    pub batch_wait: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may hold a password: never logged.
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("consumer", &self.consumer)
            .field("batch_size", &self.batch_size)
            .field("batch_wait", &self.batch_wait)
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

#[derive(clap::Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Reads the configuration from the environment (and command line), printing clap's
    /// message, which names the offending variable, and exiting on error.
    pub fn from_env_or_exit() -> Self {
        use clap::Parser;
        Args::parse().config
    }
}
