//! The example values the OpenAPI document shows for parameters and bodies: one coherent
//! story (alice's post, liked by bob), so the docs read as a conversation, not noise.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The example post's author.
pub const AUTHOR: &str = "alice";
/// The example reader, liker and commenter.
pub const READER: &str = "bob";

pub fn post_id() -> Uuid {
    Uuid::from_u128(0x0193_5a1e_7c00_7000_8000_0000_0000_0042)
}

pub fn other_post_id() -> Uuid {
    Uuid::from_u128(0x0193_5a1e_7c00_7000_8000_0000_0000_0043)
}

pub fn comment_id() -> Uuid {
    Uuid::from_u128(0x0193_5a1e_7d00_7000_8000_0000_0000_0007)
}

pub fn event_id() -> Uuid {
    Uuid::from_u128(0x0193_5a1e_7e00_7000_8000_0000_0000_0001)
}

pub fn time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default()
}

pub fn after_event() -> Option<Uuid> {
    Some(event_id())
}

pub fn feed_ids() -> Vec<Uuid> {
    vec![post_id(), other_post_id()]
}

pub fn traceparent() -> Option<String> {
    Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into())
}

/// An `ETag` as a post read answers it.
pub fn if_none_match() -> Option<String> {
    Some("\"3f2a9c0d41e87b5b6c1d2e3f40516273\"".into())
}

pub fn limit() -> Option<u32> {
    Some(20)
}

pub fn likers_cursor() -> Option<String> {
    Some(page_cursor(READER.to_owned()).encode())
}

pub fn comments_cursor() -> Option<String> {
    Some(page_cursor(comment_id()).encode())
}

fn page_cursor<K: crate::cursor::PageKey>(key: K) -> crate::cursor::Cursor<K> {
    crate::cursor::Cursor {
        created_at: time(),
        key,
    }
}

/// A live stream's last event id, as a reconnecting `EventSource` sends it back.
pub fn last_event_id() -> Option<String> {
    Some(format!("{}@1764000000000000", post_id()))
}
