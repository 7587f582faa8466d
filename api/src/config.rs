//! The api's configuration, read from environment variables (or the matching flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cors::CorsOrigins;
use tally_runtime::instance::Instance;

// Defaults, shared by the flags and by `Config::new`, so the two cannot disagree.
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_DB_POOL_SIZE: u16 = 16;
const DEFAULT_DB_TIMEOUT_MS: &str = "3000";
const DEFAULT_READ_YOUR_WRITES_TIMEOUT_MS: &str = "2000";
const DEFAULT_COUNTS_CACHE_TTL_MS: &str = "1000";
const DEFAULT_WRITE_RATE_PER_SEC: u32 = 10;
const DEFAULT_WRITE_BURST: u32 = 30;
const DEFAULT_HTTP_READ_TIMEOUT_SECS: &str = "10";
const DEFAULT_HTTP_IDLE_TIMEOUT_SECS: &str = "60";
const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 512;
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const DEFAULT_LIVE_MAX_PER_SEC: u32 = 4;
/// Each open stream costs a few KiB (its watched posts' latest counts and one task's
/// state), so 10,000 streams fit well within the api's memory; beyond that, a second
/// replica is the better answer.
const DEFAULT_LIVE_MAX_CONNECTIONS: u32 = 10_000;

/// Everything the api needs to start. Tests build it with [`Config::new`]; the binary reads
/// it from the environment through clap, which names the variable in any error.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "TALLY_HTTP_ADDR", value_name = "TALLY_HTTP_ADDR",
          default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// Postgres connection URL, as the api's role (tally_api).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,

    /// HS256 key that bearer tokens may be signed with (at least 32 bytes). At least one of
    /// this and TALLY_JWT_PUBLIC_KEY_FILE is required.
    #[arg(long, env = "TALLY_JWT_SECRET", value_name = "TALLY_JWT_SECRET", hide_env_values = true,
          value_parser = parse_secret)]
    pub jwt_secret: Option<String>,

    /// PEM file with the public key of an identity provider that signs tokens with RS256 (an
    /// RSA key) or ES256 (a P-256 key).
    #[arg(
        long,
        env = "TALLY_JWT_PUBLIC_KEY_FILE",
        value_name = "TALLY_JWT_PUBLIC_KEY_FILE"
    )]
    pub jwt_public_key_file: Option<PathBuf>,

    /// When set, tokens must carry this `iss` claim.
    #[arg(long, env = "TALLY_JWT_ISSUER", value_name = "TALLY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, tokens must carry this `aud` claim; when unset, tokens with an `aud` claim
    /// are refused (RFC 7519: a token meant for an audience the api is not, is not for it).
    #[arg(long, env = "TALLY_JWT_AUDIENCE", value_name = "TALLY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Most Postgres connections the api holds open.
    #[arg(long, env = "TALLY_DB_POOL_SIZE", value_name = "TALLY_DB_POOL_SIZE",
          default_value_t = DEFAULT_DB_POOL_SIZE,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub db_pool_size: u16,

    /// How long a request waits for a Postgres connection before answering 503.
    #[arg(long, env = "TALLY_DB_TIMEOUT_MS", value_name = "TALLY_DB_TIMEOUT_MS",
          default_value = DEFAULT_DB_TIMEOUT_MS, value_parser = parse_millis)]
    pub db_timeout: Duration,

    /// Longest a read with `after_event` waits for that event to be counted (read-your-writes).
    #[arg(long, env = "TALLY_READ_YOUR_WRITES_TIMEOUT_MS", value_name = "TALLY_READ_YOUR_WRITES_TIMEOUT_MS",
          default_value = DEFAULT_READ_YOUR_WRITES_TIMEOUT_MS, value_parser = parse_wait_millis)]
    pub read_your_writes_timeout: Duration,

    /// Age at which the feed read's counts cache reads a post again from Postgres (count
    /// events keep it current before that; this bounds what a lost event leaves stale).
    /// 0 turns the cache off: every feed read asks Postgres.
    #[arg(long, env = "TALLY_COUNTS_CACHE_TTL_MS", value_name = "TALLY_COUNTS_CACHE_TTL_MS",
          default_value = DEFAULT_COUNTS_CACHE_TTL_MS, value_parser = parse_millis)]
    pub counts_cache_ttl: Duration,

    /// Writes one user may make per second, on average; beyond that (and the burst) a write
    /// is answered 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "TALLY_WRITE_RATE_PER_SEC", value_name = "TALLY_WRITE_RATE_PER_SEC",
          default_value_t = DEFAULT_WRITE_RATE_PER_SEC)]
    pub write_rate_per_sec: u32,

    /// Writes one user may make at once before the per-second rate applies.
    #[arg(long, env = "TALLY_WRITE_BURST", value_name = "TALLY_WRITE_BURST",
          default_value_t = DEFAULT_WRITE_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub write_burst: u32,

    /// Origins whose pages may call the api (CORS): comma-separated exact origins such as
    /// `https://app.example.com`, and `*` for any origin, reads only. Unset: no CORS.
    #[arg(long, env = "TALLY_CORS_ORIGINS", value_name = "TALLY_CORS_ORIGINS",
          value_parser = CorsOrigins::parse)]
    pub cors_origins: Option<CorsOrigins>,

    /// Longest a client may take to send one whole request, headers and body; then the api
    /// answers 408 (or, mid-headers, closes the connection).
    #[arg(long, env = "TALLY_HTTP_READ_TIMEOUT_SECS", value_name = "TALLY_HTTP_READ_TIMEOUT_SECS",
          default_value = DEFAULT_HTTP_READ_TIMEOUT_SECS, value_parser = parse_timeout_secs)]
    pub http_read_timeout: Duration,

    /// Longest a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "TALLY_HTTP_IDLE_TIMEOUT_SECS", value_name = "TALLY_HTTP_IDLE_TIMEOUT_SECS",
          default_value = DEFAULT_HTTP_IDLE_TIMEOUT_SECS, value_parser = parse_timeout_secs)]
    pub http_idle_timeout: Duration,

    /// Most client connections open at once; beyond it, new connections wait to be accepted
    /// until one closes. Keep it below the process's open-file limit.
    #[arg(long, env = "TALLY_HTTP_MAX_CONNECTIONS", value_name = "TALLY_HTTP_MAX_CONNECTIONS",
          default_value_t = DEFAULT_HTTP_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_connections: u32,

    /// The NATS server(s) that carry count changes (`tally.counts.<post_id>`) to live
    /// streams; comma-separated URLs. The api starts without it and connects when it can.
    #[arg(long, env = "NATS_URL", value_name = "NATS_URL",
          default_value = DEFAULT_NATS_URL, value_parser = parse_nats_url)]
    pub nats_url: String,

    /// Most `counts` events one live stream sends per second for one post; changes in
    /// between are coalesced into the newest counts.
    #[arg(long, env = "TALLY_LIVE_MAX_PER_SEC", value_name = "TALLY_LIVE_MAX_PER_SEC",
          default_value_t = DEFAULT_LIVE_MAX_PER_SEC,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub live_max_per_sec: u32,

    /// Most live streams (`GET /v1/live`) open at once; beyond it, a new one is answered
    /// 503 with Retry-After. Each stream also holds one of TALLY_HTTP_MAX_CONNECTIONS.
    #[arg(long, env = "TALLY_LIVE_MAX_CONNECTIONS", value_name = "TALLY_LIVE_MAX_CONNECTIONS",
          default_value_t = DEFAULT_LIVE_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub live_max_connections: u32,

    /// This replica's name: in Postgres' application_name (tally-api/<name>), on every log
    /// line and on every metric. Default: the host name and the process id.
    #[arg(long, env = "TALLY_INSTANCE", value_name = "TALLY_INSTANCE",
          default_value_t = Instance::of_this_process(), value_parser = Instance::parse)]
    pub instance: Instance,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password and the secret signs tokens: neither is ever logged.
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_timeout", &self.db_timeout)
            .field("read_your_writes_timeout", &self.read_your_writes_timeout)
            .field("counts_cache_ttl", &self.counts_cache_ttl)
            .field("write_rate_per_sec", &self.write_rate_per_sec)
            .field("write_burst", &self.write_burst)
            .field("cors_origins", &self.cors_origins)
            .field("http_read_timeout", &self.http_read_timeout)
            .field("http_idle_timeout", &self.http_idle_timeout)
            .field("http_max_connections", &self.http_max_connections)
            .field("nats_url", &self.nats_url)
            .field("live_max_per_sec", &self.live_max_per_sec)
            .field("live_max_connections", &self.live_max_connections)
            .field("instance", &self.instance)
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

/// The read-your-writes wait: at most 10 s, since a request held longer than that helps no
/// frontend and ties up a connection slot.
fn parse_wait_millis(value: &str) -> Result<Duration, String> {
    let wait = parse_millis(value)?;
    if wait > Duration::from_secs(10) {
        return Err("at most 10000 (10 s)".into());
    }
    Ok(wait)
}

/// An HTTP timeout: whole seconds, at least 1 (0 would refuse every client) and at most an
/// hour (longer holds a connection slot for nothing).
fn parse_timeout_secs(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "'{value}' is not a whole number of seconds from 1 to 3600"
        )),
    }
}

/// One or more comma-separated NATS server URLs, as async-nats reads them.
fn parse_nats_url(value: &str) -> Result<String, String> {
    use std::str::FromStr;
    for server in value.split(',') {
        async_nats::ServerAddr::from_str(server.trim()).map_err(|_| {
            format!("'{server}' is not a NATS server URL (e.g. nats://127.0.0.1:4222)")
        })?;
    }
    Ok(value.to_owned())
}

#[derive(clap::Parser)]
struct ServeArgs {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Every setting at its default, with the two that have none given: where Postgres is
    /// and the HS256 key. Tests start here and change what they need.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<String>) -> Self {
        let millis = |value| parse_millis(value).unwrap_or_default();
        let secs = |value| parse_timeout_secs(value).unwrap_or_default();
        Self {
            http_addr: DEFAULT_HTTP_ADDR
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            database_url: database_url.into(),
            jwt_secret: Some(jwt_secret.into()),
            jwt_public_key_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            db_pool_size: DEFAULT_DB_POOL_SIZE,
            db_timeout: millis(DEFAULT_DB_TIMEOUT_MS),
            read_your_writes_timeout: millis(DEFAULT_READ_YOUR_WRITES_TIMEOUT_MS),
            counts_cache_ttl: millis(DEFAULT_COUNTS_CACHE_TTL_MS),
            write_rate_per_sec: DEFAULT_WRITE_RATE_PER_SEC,
            write_burst: DEFAULT_WRITE_BURST,
            cors_origins: None,
            http_read_timeout: secs(DEFAULT_HTTP_READ_TIMEOUT_SECS),
            http_idle_timeout: secs(DEFAULT_HTTP_IDLE_TIMEOUT_SECS),
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            nats_url: DEFAULT_NATS_URL.to_owned(),
            live_max_per_sec: DEFAULT_LIVE_MAX_PER_SEC,
            live_max_connections: DEFAULT_LIVE_MAX_CONNECTIONS,
            instance: Instance::of_this_process(),
        }
    }

    /// Reads the configuration from the environment alone, printing clap's message (which
    /// names the offending variable) and exiting on error.
    pub fn from_env_or_exit() -> Self {
        use clap::Parser;
        ServeArgs::parse_from(["tally-api"]).config
    }
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

    #[test]
    fn the_defaults_parse() {
        let config = Config::new("postgres://db", "k".repeat(MIN_SECRET_LEN));
        assert_eq!(config.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(config.db_timeout, Duration::from_secs(3));
        assert_eq!(config.read_your_writes_timeout, Duration::from_secs(2));
        assert_eq!(config.counts_cache_ttl, Duration::from_secs(1));
        assert_eq!(config.http_read_timeout, Duration::from_secs(10));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn a_bad_cors_origin_is_refused_naming_the_variable() {
        use clap::Parser;
        let parsed = ServeArgs::try_parse_from([
            "tally-api",
            "--database-url=postgres://db",
            "--cors-origins=https://app.example.com/",
        ]);
        let message = parsed.err().map(|err| err.to_string()).unwrap_or_default();
        assert!(message.contains("TALLY_CORS_ORIGINS"), "{message}");
        assert!(
            message.contains("write 'https://app.example.com'"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_nats_url_is_refused_naming_the_variable() {
        use clap::Parser;
        let parsed = ServeArgs::try_parse_from([
            "tally-api",
            "--database-url=postgres://db",
            "--nats-url=http://[not a host",
        ]);
        let message = parsed.err().map(|err| err.to_string()).unwrap_or_default();
        assert!(message.contains("NATS_URL"), "{message}");
        assert!(message.contains("is not a NATS server URL"), "{message}");
        assert_eq!(
            parse_nats_url("nats://a:4222,nats://b:4222"),
            Ok("nats://a:4222,nats://b:4222".to_owned())
        );
    }

    #[test]
    fn live_limits_default_to_four_a_second_and_ten_thousand_streams() {
        let config = Config::new("postgres://db", "k".repeat(MIN_SECRET_LEN));
        assert_eq!(config.live_max_per_sec, 4);
        assert_eq!(config.live_max_connections, 10_000);
        assert_eq!(config.nats_url, DEFAULT_NATS_URL);
    }

    #[test]
    fn http_timeouts_are_whole_seconds_from_one_to_an_hour() {
        assert_eq!(parse_timeout_secs("10"), Ok(Duration::from_secs(10)));
        for bad in ["0", "3601", "1.5", "soon"] {
            assert!(parse_timeout_secs(bad).is_err(), "{bad}");
        }
    }
}
