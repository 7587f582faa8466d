//! tally's relay: streams inserts into the Postgres `outbox` table, read from a logical
//! replication slot (pgoutput), to the NATS JetStream stream, and confirms a transaction's
//! position to Postgres only once JetStream acknowledged all its events and all before it.
//! Delivery is at least once; JetStream's `Nats-Msg-Id` de-duplication absorbs replays.

pub mod config;
pub mod error;
pub mod metrics;
pub mod outbox;
pub mod pgoutput;
pub mod prune;
pub mod publisher;
mod relay;
mod replication;
mod slot;

pub use config::{Config, ConfigError, StreamConfig};
pub use error::RelayError;
pub use metrics::Metrics;
pub use relay::Relay;
