//! The count events: after each commit that changes a post's counts, the updater publishes
//! the post's new absolute counts on core NATS (not JetStream), for pages that show counts
//! live. Latest value wins: a subscriber that misses one is repaired by the next, so nothing
//! is stored or replayed.
//!
//! Wire form (JSON), on subject `tally.counts.<post_id>`:
//! ```json
//! {"post_id":"0193…","likes":12,"comments":3,"updated_at":"2026-12-02T01:00:00.123456Z"}
//! ```
//!
//! The subject has three tokens and the stream's events four, so the stream
//! ([`crate::STREAM_SUBJECTS`]) never captures a count event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a subscriber to every post's count events subscribes to.
pub const COUNTS_SUBJECTS: &str = "tally.counts.>";

/// A post's counts as one updater commit left them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsChanged {
    pub post_id: Uuid,
    pub likes: i64,
    pub comments: i64,
    /// When the commit changed them (`post_counts.updated_at`); a later event for the same
    /// post carries a later time.
    pub updated_at: DateTime<Utc>,
}

impl CountsChanged {
    /// The core NATS subject of `post_id`'s count events: `tally.counts.<post_id>`.
    pub fn subject_of(post_id: Uuid) -> String {
        format!("tally.counts.{post_id}")
    }

    /// This event's subject.
    pub fn subject(&self) -> String {
        Self::subject_of(self.post_id)
    }

    /// The JSON published.
    pub fn to_json(&self) -> String {
        // Serializing a uuid, two integers and a timestamp cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_four_fields_of_the_contract() {
        let event = CountsChanged {
            post_id: Uuid::nil(),
            likes: 2,
            comments: 1,
            updated_at: DateTime::from_timestamp(1_764_637_200, 123_456_000).unwrap_or_default(),
        };
        assert_eq!(
            event.to_json(),
            r#"{"post_id":"00000000-0000-0000-0000-000000000000","likes":2,"comments":1,"updated_at":"2025-12-02T01:00:00.123456Z"}"#
        );
        assert_eq!(
            event.subject(),
            "tally.counts.00000000-0000-0000-0000-000000000000"
        );
    }
}
