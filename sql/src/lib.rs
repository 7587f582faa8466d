//! tally's database contract: the embedded migrations (tables, roles, grants, publication)
//! and the event types the api writes into the outbox and the updater reads off the stream.

pub mod counts;
pub mod event;
pub mod migrate;

pub use counts::{COUNTS_SUBJECTS, CountsChanged};
pub use event::{
    DecodeError, Event, EventType, HEADER_EVENT_TYPE, HEADER_MSG_ID, HEADER_TRACEPARENT,
};
pub use migrate::{MigrateError, migrate};

/// The publication the relay streams: inserts into `outbox` only.
pub const PUBLICATION: &str = "tally_outbox";
/// The JetStream stream that holds every tally event.
pub const STREAM: &str = "TALLY";
/// The subjects the stream captures: the events' `tally.<aggregate>.<action>.<post_id>`,
/// and not the count events' `tally.counts.<post_id>` (core NATS, three tokens), which would
/// otherwise be stored in the stream and reach the updater as undecodable events.
pub const STREAM_SUBJECTS: &str = "tally.*.*.*";
/// What a stream made before the count events captured: the relay narrows such a stream to
/// [`STREAM_SUBJECTS`] (every event it holds has four tokens, so none is left out).
pub const STREAM_SUBJECTS_BEFORE_COUNT_EVENTS: &str = "tally.>";
/// The subjects of the like events (`like.added`, `like.removed`), for a core NATS
/// subscriber that follows who likes what (the api's per-reader `liked_by_me` cache).
pub const LIKE_SUBJECTS: &str = "tally.like.*.*";
