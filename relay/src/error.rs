//! The relay's error type, and a formatter that logs an error with all its causes.

use std::fmt;

use crate::config::ConfigError;
use crate::outbox::OutboxError;
use crate::pgoutput::DecodeError;

/// Why the relay could not start, or why a streaming session ended.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),

    #[error("cannot connect to Postgres")]
    PostgresConnect(#[source] tokio_postgres::Error),

    #[error("Postgres query failed while {doing}")]
    Postgres {
        doing: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error(
        "Postgres has wal_level = '{found}', logical replication needs 'logical': run \
         ALTER SYSTEM SET wal_level = logical (or set it in postgresql.conf) and restart Postgres"
    )]
    WalLevel { found: String },

    #[error(
        "publication {publication} does not exist and the relay's role may not create it: \
         run tally's migrations, or as the owner of outbox run \
         CREATE PUBLICATION {publication} FOR TABLE outbox WITH (publish = 'insert')"
    )]
    PublicationMissing {
        publication: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error(
        "replication slot {slot} exists but is a {kind} slot with plugin {plugin:?} on database \
         {database:?}; the relay needs a logical pgoutput slot on this database: drop it or \
         choose another TALLY_RELAY_SLOT"
    )]
    SlotMismatch {
        slot: String,
        kind: String,
        plugin: Option<String>,
        database: Option<String>,
    },

    #[error(
        "role {role} may not stream a replication slot: run ALTER ROLE {role} REPLICATION \
         as a superuser (tally's migrations create tally_relay with it), or connect as tally_relay"
    )]
    NoReplication { role: String },

    #[error(
        "NATS at {url} has no JetStream: start nats-server with -js (or a jetstream {{}} block \
         in its configuration), or point NATS_URL at a server with JetStream enabled"
    )]
    NoJetStream { url: String },

    #[error("cannot bind the metrics listener on {addr} (TALLY_RELAY_METRICS_ADDR)")]
    MetricsBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot connect to NATS")]
    NatsConnect(#[source] async_nats::ConnectError),

    #[error("cannot get or create JetStream stream {stream}")]
    Stream {
        stream: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },

    #[error(
        "JetStream did not answer about stream {stream} in time (is NATS up, with JetStream enabled?)"
    )]
    StreamTimeout { stream: String },

    #[error("replication stream failed")]
    Replication(#[source] pgwire_replication::PgWireError),

    #[error("Postgres ended the replication stream")]
    ReplicationEnded,

    #[error("cannot decode a pgoutput message")]
    Decode(#[source] DecodeError),

    #[error("outbox row in the transaction committing at {commit_lsn} cannot be published")]
    Outbox {
        commit_lsn: String,
        #[source]
        source: OutboxError,
    },

    #[error("publishing event {event_id} to JetStream failed")]
    Publish {
        event_id: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },

    #[error("JetStream did not acknowledge event {event_id}")]
    Ack {
        event_id: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },

    #[error("the acknowledgement task stopped")]
    AckWindowClosed,

    #[error("the acknowledgement task ended unexpectedly")]
    AckTask(#[source] tokio::task::JoinError),
}

impl RelayError {
    /// Another session streams the slot (SQLSTATE 55006, object in use): this relay is a
    /// standby until that one goes away.
    pub fn is_slot_in_use(&self) -> bool {
        self.server_sqlstate("55006")
    }

    /// Postgres refused the replication connection for lack of privilege (SQLSTATE 42501):
    /// the role lost REPLICATION after startup.
    pub fn is_privilege(&self) -> bool {
        self.server_sqlstate("42501")
    }

    fn server_sqlstate(&self, code: &str) -> bool {
        matches!(self, Self::Replication(pgwire_replication::PgWireError::Server(message))
            if message.contains(&format!("SQLSTATE {code}")))
    }

    /// Postgres or NATS could not be reached (down, restarting, refusing connections for
    /// now): worth retrying. Misconfiguration (bad credentials, a missing database, the
    /// checks with a fix in their message) is not.
    pub fn is_transient(&self) -> bool {
        use async_nats::ConnectErrorKind;
        use async_nats::jetstream::context::CreateStreamErrorKind;
        match self {
            Self::PostgresConnect(source) | Self::Postgres { source, .. } => {
                transient_postgres(source)
            }
            Self::NatsConnect(source) => matches!(
                source.kind(),
                ConnectErrorKind::Dns
                    | ConnectErrorKind::TimedOut
                    | ConnectErrorKind::Io
                    | ConnectErrorKind::MaxReconnects
            ),
            Self::StreamTimeout { .. } => true,
            Self::Stream { source, .. } => {
                matches!(source.kind(), CreateStreamErrorKind::TimedOut)
            }
            _ => false,
        }
    }

    /// The error and its causes on one line, for logs.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// Displays an error followed by each of its sources, separated by `: `.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

/// A connection that failed or broke, or a server shutting down or starting up; not an
/// answer about the request itself.
fn transient_postgres(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
    }
}
