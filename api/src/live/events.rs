//! What a live stream sends: the event types (declared in the spec) and their
//! `text/event-stream` framing, with a payload type that declares the stream in the spec.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::{Body, IntoResponse, Response};
use poem_openapi::Object;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ToJSON, Type};
use uuid::Uuid;

use tally_sql::CountsChanged;

use crate::examples;
use crate::store::PostCounts;

/// A post's counts: the data of a `counts` event (the same fields as the updater's
/// `tally.counts.<post_id>` message, `tally_sql::CountsChanged`).
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(example)]
pub struct LiveCounts {
    /// The post's id.
    pub post_id: Uuid,
    /// How many users like the post, as of `updated_at`.
    pub likes: i64,
    /// How many live comments the post has, as of `updated_at`.
    pub comments: i64,
    /// When the updater last changed these counts (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
}

impl LiveCounts {
    /// Whether these counts are newer than `current`: later, or as late but different (the
    /// same commit read from Postgres and heard from NATS is one value, not two).
    pub fn supersedes(&self, current: &LiveCounts) -> bool {
        self.updated_at > current.updated_at
            || (self.updated_at == current.updated_at && self != current)
    }

    /// The event's `id`: which post and which version of its counts. Opaque to clients; an
    /// `EventSource` sends it back as `Last-Event-ID` when it reconnects.
    pub fn event_id(&self) -> String {
        format!("{}@{}", self.post_id, self.updated_at.timestamp_micros())
    }
}

impl From<PostCounts> for LiveCounts {
    fn from(row: PostCounts) -> Self {
        Self {
            post_id: row.post_id,
            likes: row.likes,
            comments: row.comments,
            updated_at: row.updated_at,
        }
    }
}

impl From<CountsChanged> for LiveCounts {
    fn from(event: CountsChanged) -> Self {
        Self {
            post_id: event.post_id,
            likes: event.likes,
            comments: event.comments,
            updated_at: event.updated_at,
        }
    }
}

impl Example for LiveCounts {
    fn example() -> Self {
        Self {
            post_id: examples::post_id(),
            likes: 42,
            comments: 7,
            updated_at: examples::time(),
        }
    }
}

/// The data of a `missing` event: an id asked for that names no post (never created, or
/// deleted). It is not followed.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(example)]
pub struct LiveMissing {
    /// The id that names no post.
    pub post_id: Uuid,
}

impl Example for LiveMissing {
    fn example() -> Self {
        Self {
            post_id: examples::other_post_id(),
        }
    }
}

/// One event of a live stream: `event: counts` carries [`LiveCounts`], `event: missing`
/// carries [`LiveMissing`]. Comment lines (`: keep-alive`) come every 15 s in between.
/// Declared in the spec inline, by [`LiveEvents::schema_ref`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    Counts(LiveCounts),
    Missing(LiveMissing),
}

/// The comment line that keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

impl LiveEvent {
    /// The event framed as `text/event-stream` (its JSON is one line, so one `data:` line).
    pub fn frame(&self) -> Bytes {
        let text = match self {
            Self::Counts(counts) => format!(
                "event: counts\nid: {}\ndata: {}\n\n",
                counts.event_id(),
                counts.to_json_string()
            ),
            Self::Missing(missing) => {
                format!("event: missing\ndata: {}\n\n", missing.to_json_string())
            }
        };
        Bytes::from(text)
    }
}

/// A live stream's framed events. Its own payload type rather than poem-openapi's
/// `EventStream`: that one's keep-alive is a bare `:` line and it cannot name an event's
/// type per variant without losing the spec; this one declares the same schema.
pub struct LiveEvents(pub BoxStream<'static, Bytes>);

impl std::fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveEvents")
    }
}

impl Payload for LiveEvents {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    /// An event stream as poem-openapi declares one (an array in the `event-stream` format),
    /// its items one of the two events' data; the served document states each event instead
    /// ([`stream_schema`], written in by `spec::finish`).
    fn schema_ref() -> MetaSchemaRef {
        let event = MetaSchema {
            description: Some(
                "The data of one event: `event: counts` carries LiveCounts, `event: missing` \
                 LiveMissing. `: keep-alive` comment lines come every 15 s in between.",
            ),
            one_of: vec![LiveCounts::schema_ref(), LiveMissing::schema_ref()],
            example: Some(LiveCounts::example().to_json().unwrap_or_default()),
            ..MetaSchema::ANY
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            items: Some(Box::new(MetaSchemaRef::Inline(Box::new(event)))),
            ..MetaSchema::new_with_format("array", "event-stream")
        }))
    }

    fn register(registry: &mut Registry) {
        LiveCounts::register(registry);
        LiveMissing::register(registry);
    }
}

/// The stream's schema as the committed spec states it: each server-sent event as a client
/// reads it (its `event` name, `id` and `data`), the data a JSON text of LiveCounts or
/// LiveMissing. Before OpenAPI 3.2's `itemSchema`, this is how a `text/event-stream`
/// response describes its events (and what schemathesis checks each event against);
/// poem-openapi's own array form would describe the data alone, which no event matches.
pub fn stream_schema() -> serde_json::Value {
    let event = |name: &str, data: &str, required: &[&str]| {
        serde_json::json!({
            "type": "object",
            "required": required,
            "properties": {
                "event": { "type": "string", "enum": [name] },
                "id": { "type": "string", "description": "`<post_id>@<updated_at in µs>`." },
                "data": {
                    "type": "string",
                    "description": format!("A {data}, as JSON."),
                    "contentMediaType": "application/json",
                    "contentSchema": { "$ref": format!("#/components/schemas/{data}") }
                }
            }
        })
    };
    serde_json::json!({
        "description": "One event of the stream: `event: counts` carries LiveCounts, \
            `event: missing` LiveMissing. `: keep-alive` comment lines come every 15 s in between.",
        "oneOf": [
            event("counts", "LiveCounts", &["event", "id", "data"]),
            event("missing", "LiveMissing", &["event", "data"]),
        ]
    })
}

impl IntoResponse for LiveEvents {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            // Proxies and browsers must neither cache nor buffer a stream.
            .header("Cache-Control", "no-cache")
            .header("X-Accel-Buffering", "no")
            .body(Body::from_bytes_stream(self.0.map(Ok::<_, std::io::Error>)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(likes: i64, micros: i64) -> LiveCounts {
        LiveCounts {
            post_id: examples::post_id(),
            likes,
            comments: 0,
            updated_at: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        }
    }

    #[test]
    fn later_counts_supersede_and_the_same_counts_do_not() {
        assert!(counts(2, 20).supersedes(&counts(1, 10)));
        assert!(!counts(1, 10).supersedes(&counts(2, 20)));
        assert!(!counts(1, 10).supersedes(&counts(1, 10)));
        assert!(counts(2, 10).supersedes(&counts(1, 10)));
    }

    #[test]
    fn a_counts_event_is_framed_with_its_type_id_and_one_data_line() {
        let frame = LiveEvent::Counts(counts(3, 1_000_000)).frame();
        let text = std::str::from_utf8(&frame).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "event: counts");
        assert_eq!(lines[1], format!("id: {}@1000000", examples::post_id()));
        assert!(lines[2].starts_with("data: {"), "{text}");
        assert!(text.ends_with("\n\n"), "{text}");
        let data: serde_json::Value =
            serde_json::from_str(&lines[2]["data: ".len()..]).unwrap_or_default();
        assert_eq!(data["likes"], 3);
        assert_eq!(data["post_id"], examples::post_id().to_string());
    }

    #[test]
    fn a_missing_event_carries_only_the_post_id() {
        let frame = LiveEvent::Missing(LiveMissing {
            post_id: examples::other_post_id(),
        })
        .frame();
        assert_eq!(
            frame,
            Bytes::from(format!(
                "event: missing\ndata: {{\"post_id\":\"{}\"}}\n\n",
                examples::other_post_id()
            ))
        );
    }
}
