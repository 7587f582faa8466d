//! The api's configuration, read from environment variables (or the matching flags).

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the api needs to start. Tests build it directly; the binary reads it from the
/// environment through clap, which names the variable in any error.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "TALLY_HTTP_ADDR",
        value_name = "TALLY_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,

    /// Postgres connection URL, as the api's role (tally_api).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,

    /// HS256 key that bearer tokens are signed with (at least 32 bytes).
    #[arg(long, env = "TALLY_JWT_SECRET", value_name = "TALLY_JWT_SECRET", hide_env_values = true,
          value_parser = parse_secret)]
    pub jwt_secret: String,

    /// Most Postgres connections the api holds open.
    #[arg(long, env = "TALLY_DB_POOL_SIZE", value_name = "TALLY_DB_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub db_pool_size: u16,

    /// How long a request waits for a Postgres connection before answering 503.
    #[arg(long, env = "TALLY_DB_TIMEOUT_MS", value_name = "TALLY_DB_TIMEOUT_MS", default_value = "3000",
          value_parser = parse_millis)]
    pub db_timeout: Duration,

    /// Longest a read with `after_event` waits for that event to be counted (read-your-writes).
    #[arg(long, env = "TALLY_READ_YOUR_WRITES_TIMEOUT_MS", value_name = "TALLY_READ_YOUR_WRITES_TIMEOUT_MS",
          default_value = "2000", value_parser = parse_wait_millis)]
    pub read_your_writes_timeout: Duration,

    /// How long the feed read's counts cache keeps a post; counts trail writes by the
    /// pipeline's lag plus at most this.
    #[arg(long, env = "TALLY_COUNTS_CACHE_TTL_MS", value_name = "TALLY_COUNTS_CACHE_TTL_MS",
          default_value = "1000", value_parser = parse_millis)]
    pub counts_cache_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password and the secret signs tokens: neither is ever logged.
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_timeout", &self.db_timeout)
            .field("read_your_writes_timeout", &self.read_your_writes_timeout)
            .field("counts_cache_ttl", &self.counts_cache_ttl)
            .finish_non_exhaustive()
    }
}

/// The shortest HS256 key accepted: RFC 7518 asks for a key as long as the hash.
pub const MIN_SECRET_LEN: usize = 32;

fn parse_secret(value: &str) -> Result<String, String> {
    if value.len() < MIN_SECRET_LEN {
        return Err(format!("must be at least {MIN_SECRET_LEN} bytes long"));
    }
    Ok(value.to_owned())
}

/// Parses a whole number of milliseconds.
pub fn parse_millis(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("'{value}' is not a whole number of milliseconds"))
}

#[derive(clap::Parser)]
struct ServeArgs {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Reads the configuration from the environment alone, printing clap's message (which
    /// names the offending variable) and exiting on error.
    pub fn from_env_or_exit() -> Self {
        use clap::Parser;
        ServeArgs::parse_from(["tally-api"]).config
    }
}

/// The read-your-writes wait: at most 10 s, since a request held longer than that helps no
/// frontend and ties up a connection slot.
fn parse_wait_millis(value: &str) -> Result<Duration, String> {
    let wait = parse_millis(value)?;
    if wait > Duration::from_secs(10) {
        return Err("at most 10000 (10 s)".into());
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_your_writes_wait_over_ten_seconds_is_refused() {
        assert_eq!(parse_wait_millis("2000"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_wait_millis("10001"),
            Err("at most 10000 (10 s)".to_owned())
        );
        assert!(parse_wait_millis("soon").is_err());
    }
}
