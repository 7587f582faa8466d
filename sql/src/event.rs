//! The events tally publishes, one per real state change. Other services read these off the
//! stream, so this is a public contract: fields are only ever added, and a breaking change
//! bumps [`Event::VERSION`].
//!
//! Wire form (JSON), e.g. on subject `tally.like.added.<post_id>`:
//! ```json
//! {"version":1,"id":"0193…","type":"like.added","time":"2026-11-22T20:00:00.123456Z",
//!  "post_id":"…","post_author":"alice","actor":"bob"}
//! ```
//!
//! The count events the updater publishes after each commit (`tally.counts.<post_id>`, core
//! NATS) are the other half of the contract: see [`crate::counts`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// NATS header carrying the event id; JetStream drops a second message with the same id
/// inside the stream's duplicate window.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// NATS header carrying the event type, so subscribers can route without parsing JSON.
pub const HEADER_EVENT_TYPE: &str = "Tally-Event-Type";
/// W3C trace context of the request that caused the event, when it had one.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// What happened. Serialized as `<aggregate>.<action>`, the middle of the NATS subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "post.created")]
    PostCreated,
    #[serde(rename = "post.deleted")]
    PostDeleted,
    #[serde(rename = "like.added")]
    LikeAdded,
    #[serde(rename = "like.removed")]
    LikeRemoved,
    #[serde(rename = "comment.added")]
    CommentAdded,
    #[serde(rename = "comment.removed")]
    CommentRemoved,
}

impl EventType {
    /// The `<aggregate>.<action>` name, as in the payload's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostCreated => "post.created",
            Self::PostDeleted => "post.deleted",
            Self::LikeAdded => "like.added",
            Self::LikeRemoved => "like.removed",
            Self::CommentAdded => "comment.added",
            Self::CommentRemoved => "comment.removed",
        }
    }

    /// The change this event makes to the post's like count.
    pub fn like_delta(self) -> i64 {
        match self {
            Self::LikeAdded => 1,
            Self::LikeRemoved => -1,
            _ => 0,
        }
    }

    /// The change this event makes to the post's comment count.
    pub fn comment_delta(self) -> i64 {
        match self {
            Self::CommentAdded => 1,
            Self::CommentRemoved => -1,
            _ => 0,
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain event, as stored in `outbox.payload` and published on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version of this payload; see [`Event::VERSION`].
    pub version: u32,
    /// UUIDv7: unique, and ordered by creation time.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the change committed (the api's clock).
    pub time: DateTime<Utc>,
    pub post_id: Uuid,
    /// The post's author, so a notifier needs no lookup.
    pub post_author: String,
    /// The user whose action caused the event.
    pub actor: String,
    /// The comment, for `comment.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<Uuid>,
}

/// Why bytes off the stream are not an event this version of tally can apply.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a tally event: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("event version {0} is not supported (this build reads version {v})", v = Event::VERSION)]
    UnsupportedVersion(u32),
}

impl Event {
    /// The payload schema version this build writes and reads.
    pub const VERSION: u32 = 1;

    /// A new event of `event_type` with a fresh UUIDv7 id, stamped now.
    pub fn new(event_type: EventType, post_id: Uuid, post_author: &str, actor: &str) -> Self {
        Self {
            version: Self::VERSION,
            id: Uuid::now_v7(),
            event_type,
            time: Utc::now(),
            post_id,
            post_author: post_author.to_owned(),
            actor: actor.to_owned(),
            comment_id: None,
        }
    }

    /// The NATS subject: `tally.<aggregate>.<action>.<post_id>`.
    pub fn subject(&self) -> String {
        format!("tally.{}.{}", self.event_type.as_str(), self.post_id)
    }

    /// Parses and version-checks a payload read off the stream.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        // Check the version first so a future payload reports "unsupported version" rather
        // than whatever field it happened to change.
        let Versioned { version } =
            serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if version != Self::VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        serde_json::from_slice(bytes).map_err(DecodeError::Malformed)
    }

    /// The JSON stored in `outbox.payload`.
    pub fn to_json(&self) -> String {
        // Serializing this struct (strings, uuids, a timestamp) cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_json() {
        let mut event = Event::new(EventType::CommentAdded, Uuid::now_v7(), "alice", "bob");
        event.comment_id = Some(Uuid::now_v7());
        assert_eq!(Event::decode(event.to_json().as_bytes()).ok(), Some(event));
    }

    #[test]
    fn the_subject_names_aggregate_action_and_post() {
        let post = Uuid::nil();
        let event = Event::new(EventType::LikeRemoved, post, "alice", "bob");
        assert_eq!(event.subject(), format!("tally.like.removed.{post}"));
    }

    #[test]
    fn an_unknown_version_is_refused_by_name() {
        let event = Event::new(EventType::LikeAdded, Uuid::nil(), "a", "b");
        let json = event.to_json().replace("\"version\":1", "\"version\":9");
        let err = Event::decode(json.as_bytes()).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("event version 9 is not supported (this build reads version 1)")
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            Event::decode(b"{not json"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
