//! The relay's configuration: read from environment variables by the binary, built directly
//! (all fields public) by tests that run the relay in-process.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use pgwire_replication::{ReplicationConfig, TlsConfig};
use tally_runtime::instance::Instance;

/// The relay's name to Postgres and NATS: `tally-relay/<TALLY_INSTANCE>`.
pub const SERVICE: &str = "tally-relay";

/// Everything the relay needs to start.
#[derive(Clone)]
pub struct Config {
    /// Postgres connection URL, as the relay's role (`tally_relay`, which has `REPLICATION`).
    pub database_url: String,
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The logical replication slot the relay reads; created at startup when missing. One
    /// relay streams a slot at a time: others wait as standbys.
    pub slot: String,
    /// The publication the slot streams (inserts into `outbox`).
    pub publication: String,
    /// The JetStream stream the events are published to.
    pub stream: StreamConfig,
    /// Most events published but not yet acknowledged by JetStream. Reading from the slot
    /// pauses while the window is full.
    pub max_in_flight: usize,
    /// Where `/metrics` is served (Prometheus text); port 0 picks a free port.
    pub metrics_addr: SocketAddr,
    /// Outbox rows older than this are deleted once the slot confirmed them; `None` keeps
    /// them forever.
    pub outbox_retention: Option<Duration>,
    /// How often the retention job runs.
    pub prune_interval: Duration,
    /// This replica's name (`TALLY_INSTANCE`): in Postgres' `application_name` and the NATS
    /// client name (`tally-relay/<name>`), on every log line and on every metric.
    pub instance: Instance,
}

/// The JetStream stream the relay creates when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    /// How long JetStream remembers a `Nats-Msg-Id`: a replay after a relay crash must fall
    /// inside it to be dropped as a duplicate.
    pub duplicate_window: Duration,
    /// How long events stay in the stream.
    pub max_age: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: tally_sql::STREAM.to_owned(),
            subjects: vec![tally_sql::STREAM_SUBJECTS.to_owned()],
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Default NATS server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default slot name.
pub const DEFAULT_SLOT: &str = "tally_outbox";
/// Default JetStream duplicate window: 2 hours.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);
/// Default retention of the stream: 7 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default bound on unacknowledged publishes.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default metrics listener.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9101";
/// Default outbox retention: 8 days, for debugging and replays. Not shorter than the
/// updater's default inbox retention: `count_drift` and reconcile read the outbox to tell
/// events still in flight from drift, for events younger than that.
pub const DEFAULT_OUTBOX_RETENTION: Duration = Duration::from_secs(8 * 24 * 60 * 60);
/// Default pause between two runs of the retention job.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

const VAR_DATABASE_URL: &str = "DATABASE_URL";
const VAR_NATS_URL: &str = "NATS_URL";
const VAR_SLOT: &str = "TALLY_RELAY_SLOT";
const VAR_PUBLICATION: &str = "TALLY_RELAY_PUBLICATION";
const VAR_MAX_IN_FLIGHT: &str = "TALLY_RELAY_MAX_IN_FLIGHT";
const VAR_DUPLICATE_WINDOW: &str = "TALLY_STREAM_DUPLICATE_WINDOW_SECS";
const VAR_MAX_AGE: &str = "TALLY_STREAM_MAX_AGE_SECS";
const VAR_METRICS_ADDR: &str = "TALLY_RELAY_METRICS_ADDR";
const VAR_OUTBOX_RETENTION: &str = "TALLY_OUTBOX_RETENTION_SECS";
const VAR_PRUNE_INTERVAL: &str = "TALLY_OUTBOX_PRUNE_INTERVAL_SECS";
const VAR_INSTANCE: &str = tally_runtime::instance::VAR;

/// The relay's command line: every flag falls back to its environment variable, and the
/// values are checked by [`Config::from_args`] with messages naming the variable.
#[derive(clap::Parser)]
#[command(
    name = "tally-relay",
    version,
    about = "Streams tally's outbox from a Postgres replication slot to NATS JetStream"
)]
struct Args {
    /// Postgres URL, as a role with REPLICATION (tally_relay)
    #[arg(long, env = VAR_DATABASE_URL, hide_env_values = true)]
    database_url: Option<String>,
    /// NATS server [default: nats://127.0.0.1:4222]
    #[arg(long, env = VAR_NATS_URL)]
    nats_url: Option<String>,
    /// Logical replication slot, created when missing; relays sharing it are one active plus standbys [default: tally_outbox]
    #[arg(long, env = VAR_SLOT)]
    slot: Option<String>,
    /// Publication the slot streams [default: tally_outbox]
    #[arg(long, env = VAR_PUBLICATION)]
    publication: Option<String>,
    /// Most publishes awaiting JetStream's ack [default: 4096]
    #[arg(long, env = VAR_MAX_IN_FLIGHT)]
    max_in_flight: Option<String>,
    /// Where /metrics is served [default: 127.0.0.1:9101]
    #[arg(long, env = VAR_METRICS_ADDR)]
    metrics_addr: Option<String>,
    /// JetStream de-duplication window of a stream the relay creates [default: 7200]
    #[arg(long, env = VAR_DUPLICATE_WINDOW)]
    stream_duplicate_window_secs: Option<String>,
    /// Retention of a stream the relay creates [default: 604800]
    #[arg(long, env = VAR_MAX_AGE)]
    stream_max_age_secs: Option<String>,
    /// Published outbox rows older than this are pruned; 0 keeps them [default: 691200]
    #[arg(long, env = VAR_OUTBOX_RETENTION)]
    outbox_retention_secs: Option<String>,
    /// How often the outbox retention job runs [default: 60]
    #[arg(long, env = VAR_PRUNE_INTERVAL)]
    outbox_prune_interval_secs: Option<String>,
    /// This replica's name, for Postgres, NATS, logs and metrics [default: host name and pid]
    #[arg(long, env = VAR_INSTANCE)]
    instance: Option<String>,
}

impl Args {
    fn get(&self, var: &str) -> Option<String> {
        match var {
            VAR_DATABASE_URL => self.database_url.clone(),
            VAR_NATS_URL => self.nats_url.clone(),
            VAR_SLOT => self.slot.clone(),
            VAR_PUBLICATION => self.publication.clone(),
            VAR_MAX_IN_FLIGHT => self.max_in_flight.clone(),
            VAR_METRICS_ADDR => self.metrics_addr.clone(),
            VAR_DUPLICATE_WINDOW => self.stream_duplicate_window_secs.clone(),
            VAR_MAX_AGE => self.stream_max_age_secs.clone(),
            VAR_OUTBOX_RETENTION => self.outbox_retention_secs.clone(),
            VAR_PRUNE_INTERVAL => self.outbox_prune_interval_secs.clone(),
            VAR_INSTANCE => self.instance.clone(),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may hold a password: it is never logged.
        f.debug_struct("Args").finish_non_exhaustive()
    }
}

/// A configuration value that is missing or unusable, naming the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set")]
    Missing { var: &'static str },
    #[error("{var} is not valid: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("{var} is not a valid Postgres connection URL")]
    DatabaseUrl {
        var: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Config {
    /// A configuration with every optional setting at its default.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            nats_url: nats_url.into(),
            slot: DEFAULT_SLOT.to_owned(),
            publication: tally_sql::PUBLICATION.to_owned(),
            stream: StreamConfig::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            metrics_addr: DEFAULT_METRICS_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9101))),
            outbox_retention: Some(DEFAULT_OUTBOX_RETENTION),
            prune_interval: DEFAULT_PRUNE_INTERVAL,
            instance: Instance::of_this_process(),
        }
    }

    /// Reads the command line (`--help` lists the flags), each flag falling back to its
    /// environment variable; checked like [`Config::from_env`].
    pub fn from_args() -> Result<Config, ConfigError> {
        use clap::Parser;
        let args = Args::parse();
        Self::from_lookup(|var| args.get(var))
    }

    /// Reads `DATABASE_URL` (required), `NATS_URL` (default `nats://127.0.0.1:4222`), `TALLY_RELAY_SLOT`,
    /// `TALLY_RELAY_PUBLICATION`, `TALLY_RELAY_MAX_IN_FLIGHT`,
    /// `TALLY_STREAM_DUPLICATE_WINDOW_SECS`, `TALLY_STREAM_MAX_AGE_SECS`,
    /// `TALLY_RELAY_METRICS_ADDR`, `TALLY_OUTBOX_RETENTION_SECS` (0 keeps rows forever) and
    /// `TALLY_OUTBOX_PRUNE_INTERVAL_SECS`.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty variable is treated as unset, as shells and compose files make it easy
        // to export one by accident.
        let get = |var: &str| lookup(var).filter(|value| !value.trim().is_empty());
        let required = |var: &'static str| get(var).ok_or(ConfigError::Missing { var });
        let secs = |var: &'static str, default: Duration| match get(var) {
            None => Ok(default),
            Some(value) => parse_secs(var, &value),
        };

        let nats_url = get(VAR_NATS_URL).unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
        let mut config = Config::new(required(VAR_DATABASE_URL)?, nats_url);
        if let Some(slot) = get(VAR_SLOT) {
            config.slot = slot;
        }
        if let Some(publication) = get(VAR_PUBLICATION) {
            config.publication = publication;
        }
        if let Some(value) = get(VAR_MAX_IN_FLIGHT) {
            config.max_in_flight = value.trim().parse().map_err(|_| ConfigError::Invalid {
                var: VAR_MAX_IN_FLIGHT,
                reason: format!("'{value}' is not a whole number"),
            })?;
        }
        config.stream.duplicate_window = secs(VAR_DUPLICATE_WINDOW, DEFAULT_DUPLICATE_WINDOW)?;
        config.stream.max_age = secs(VAR_MAX_AGE, DEFAULT_MAX_AGE)?;
        if let Some(value) = get(VAR_METRICS_ADDR) {
            config.metrics_addr = value.trim().parse().map_err(|_| ConfigError::Invalid {
                var: VAR_METRICS_ADDR,
                reason: format!("'{value}' is not an address such as 127.0.0.1:9101"),
            })?;
        }
        let retention = secs(VAR_OUTBOX_RETENTION, DEFAULT_OUTBOX_RETENTION)?;
        config.outbox_retention = (!retention.is_zero()).then_some(retention);
        config.prune_interval = secs(VAR_PRUNE_INTERVAL, DEFAULT_PRUNE_INTERVAL)?;
        // Not `get`: an empty or blank name is refused, as in the api and the updater, rather
        // than silently replaced by the default.
        if let Some(value) = lookup(VAR_INSTANCE) {
            config.instance = Instance::new(&value).map_err(|err| ConfigError::Invalid {
                var: VAR_INSTANCE,
                reason: err.to_string(),
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that a struct literal could get wrong. Called by `Relay::build`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.postgres()?;
        if self.nats_url.trim().is_empty() {
            return Err(ConfigError::Missing { var: VAR_NATS_URL });
        }
        check_name(VAR_SLOT, &self.slot)?;
        check_name(VAR_PUBLICATION, &self.publication)?;
        if self.max_in_flight == 0 || self.max_in_flight > 1_000_000 {
            return Err(ConfigError::Invalid {
                var: VAR_MAX_IN_FLIGHT,
                reason: "must be between 1 and 1000000".to_owned(),
            });
        }
        if self.prune_interval.is_zero() {
            return Err(ConfigError::Invalid {
                var: VAR_PRUNE_INTERVAL,
                reason: "must be at least 1 second".to_owned(),
            });
        }
        if self.stream.duplicate_window.is_zero() {
            return Err(ConfigError::Invalid {
                var: VAR_DUPLICATE_WINDOW,
                reason: "must be at least 1 second".to_owned(),
            });
        }
        // JetStream refuses a duplicate window longer than the retention.
        if !self.stream.max_age.is_zero() && self.stream.max_age < self.stream.duplicate_window {
            return Err(ConfigError::Invalid {
                var: VAR_MAX_AGE,
                reason: format!(
                    "must not be shorter than {VAR_DUPLICATE_WINDOW} ({} s)",
                    self.stream.duplicate_window.as_secs()
                ),
            });
        }
        Ok(())
    }

    /// The parsed `database_url`, for the ordinary (non-replication) connection.
    pub(crate) fn postgres(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let mut config =
            tokio_postgres::Config::from_str(&self.database_url).map_err(|source| {
                ConfigError::DatabaseUrl {
                    var: VAR_DATABASE_URL,
                    source,
                }
            })?;
        config.application_name(self.client_name());
        // The replication connection has no TLS in this build; refusing here beats a
        // confusing failure later, or a silently unencrypted connection.
        if !matches!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable | tokio_postgres::config::SslMode::Prefer
        ) {
            return Err(ConfigError::Invalid {
                var: VAR_DATABASE_URL,
                reason:
                    "TLS to Postgres is not supported by tally-relay: use sslmode=disable or prefer"
                        .to_owned(),
            });
        }
        Ok(config)
    }

    /// The replication connection's settings, taken from `database_url`.
    pub(crate) fn replication(&self) -> Result<ReplicationConfig, ConfigError> {
        let pg = self.postgres()?;
        let invalid = |reason: &str| ConfigError::Invalid {
            var: VAR_DATABASE_URL,
            reason: reason.to_owned(),
        };
        let user = pg
            .get_user()
            .ok_or_else(|| invalid("names no user"))?
            .to_owned();
        let password = match pg.get_password() {
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map_err(|_| invalid("the password is not UTF-8"))?,
            None => String::new(),
        };
        let database = pg.get_dbname().unwrap_or(&user).to_owned();
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let replication = match pg.get_hosts().first() {
            None => ReplicationConfig::new(
                "localhost",
                user,
                password,
                database,
                self.slot.clone(),
                self.publication.clone(),
            ),
            Some(tokio_postgres::config::Host::Tcp(host)) => ReplicationConfig::new(
                host.clone(),
                user,
                password,
                database,
                self.slot.clone(),
                self.publication.clone(),
            ),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(dir)) => ReplicationConfig::unix(
                dir.to_string_lossy().into_owned(),
                port,
                user,
                password,
                database,
                self.slot.clone(),
                self.publication.clone(),
            ),
        };
        Ok(replication
            .with_port(port)
            .with_tls(TlsConfig::disabled())
            .with_application_name(self.client_name()))
    }

    /// `tally-relay/<instance>`: the relay's name to Postgres and NATS.
    pub fn client_name(&self) -> String {
        self.instance.client_name(SERVICE)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may hold a password: it is never logged.
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .field("stream", &self.stream)
            .field("max_in_flight", &self.max_in_flight)
            .field("metrics_addr", &self.metrics_addr)
            .field("outbox_retention", &self.outbox_retention)
            .field("prune_interval", &self.prune_interval)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn parse_secs(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| ConfigError::Invalid {
            var,
            reason: format!("'{value}' is not a whole number of seconds"),
        })
}

/// Slot and publication names travel unquoted in START_REPLICATION and are embedded in DDL,
/// so only Postgres' plain slot-name alphabet is accepted.
fn check_name(var: &'static str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: format!(
                "'{name}' must be 1 to 63 characters of lower-case letters, digits and '_'"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|var| vars.get(var).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        (
            "DATABASE_URL",
            "postgres://tally_relay:pw@db.example:6543/tally",
        ),
        ("NATS_URL", "nats://127.0.0.1:4222"),
    ];

    #[test]
    fn defaults_fill_everything_but_the_urls() {
        let config = from(&BASE).map_err(|e| e.to_string());
        let config = config.as_ref().map(|c| {
            (
                c.slot.as_str(),
                c.publication.as_str(),
                c.stream.clone(),
                c.max_in_flight,
            )
        });
        assert_eq!(
            config,
            Ok((
                "tally_outbox",
                "tally_outbox",
                StreamConfig::default(),
                DEFAULT_MAX_IN_FLIGHT
            ))
        );
    }

    #[test]
    fn a_missing_url_names_its_variable() {
        let err = from(&BASE[1..]).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("DATABASE_URL is not set"));
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        let mut vars = BASE.to_vec();
        vars.push(("TALLY_STREAM_MAX_AGE_SECS", "a week"));
        let err = from(&vars).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "TALLY_STREAM_MAX_AGE_SECS is not valid: 'a week' is not a whole number of seconds"
            )
        );
    }

    #[test]
    fn a_slot_name_with_odd_characters_is_refused() {
        let mut vars = BASE.to_vec();
        vars.push(("TALLY_RELAY_SLOT", "Slot; drop"));
        let err = from(&vars).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("TALLY_RELAY_SLOT is not valid")),
            "{err:?}"
        );
    }

    #[test]
    fn a_blank_instance_name_names_its_variable() {
        let mut vars = BASE.to_vec();
        vars.push(("TALLY_INSTANCE", " "));
        let err = from(&vars).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("TALLY_INSTANCE is not valid: must be 1 to 48")),
            "{err:?}"
        );
    }

    #[test]
    fn the_replication_connection_uses_the_url_parts() {
        let config = from(&BASE).ok();
        let replication = config.and_then(|c| c.replication().ok());
        let parts = replication.as_ref().map(|r| {
            (
                r.host.as_str(),
                r.port,
                r.user.as_str(),
                r.password.as_str(),
                r.database.as_str(),
            )
        });
        assert_eq!(
            parts,
            Some(("db.example", 6543, "tally_relay", "pw", "tally"))
        );
    }
}
