//! tally's database contract: the embedded migrations (tables, roles, grants, publication)
//! and the event types the api writes into the outbox and the updater reads off the stream.

pub mod event;
pub mod migrate;

pub use event::{
    DecodeError, Event, EventType, HEADER_EVENT_TYPE, HEADER_MSG_ID, HEADER_TRACEPARENT,
};
pub use migrate::{MigrateError, migrate};

/// The publication the relay streams: inserts into `outbox` only.
pub const PUBLICATION: &str = "tally_outbox";
/// The JetStream stream that holds every tally event.
pub const STREAM: &str = "TALLY";
/// The subjects the stream captures.
pub const STREAM_SUBJECTS: &str = "tally.>";
