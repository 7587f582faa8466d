//! Keyset pagination cursors for the newest-first lists (who liked a post, its comments).
//!
//! A cursor names the last row of a page by its sort key, `(created_at, tie-breaker)`; the
//! next page is the rows strictly after it. Unlike an offset, rows added at the head while a
//! client pages (new likes arrive newest first) shift nothing: no row is skipped or repeated.
//! The cursor is opaque to clients (base64url) and tagged with its list, so one from another
//! list, or a forged one, is refused with a 400 rather than reaching the query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// The list a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Likers,
    Comments,
}

impl List {
    fn tag(self) -> &'static str {
        match self {
            Self::Likers => "l1",
            Self::Comments => "c1",
        }
    }
}

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    /// The tie-breaker among rows of the same instant: the user id for likers, the comment
    /// id for comments.
    pub key: String,
}

/// A cursor this api did not issue for this list.
#[derive(Debug, thiserror::Error)]
#[error("`cursor` is not a cursor this list returned; start again without one")]
pub struct BadCursor;

impl Cursor {
    /// The opaque form handed to clients as `next_cursor`.
    pub fn encode(&self, list: List) -> String {
        let raw = format!(
            "{}.{}.{}",
            list.tag(),
            self.created_at.timestamp_micros(),
            self.key
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a cursor a client sent back for `list`.
    pub fn decode(list: List, cursor: &str) -> Result<Self, BadCursor> {
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| BadCursor)?;
        let raw = String::from_utf8(raw).map_err(|_| BadCursor)?;
        let mut parts = raw.splitn(3, '.');
        let (Some(tag), Some(micros), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(BadCursor);
        };
        if tag != list.tag() || key.is_empty() || key.contains('\0') {
            return Err(BadCursor);
        }
        let created_at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or(BadCursor)?;
        Ok(Self {
            created_at,
            key: key.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_to_the_microsecond() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap_or_default(),
            key: "bob.the.builder".into(),
        };
        let encoded = cursor.encode(List::Likers);
        assert_eq!(Cursor::decode(List::Likers, &encoded).ok(), Some(cursor));
    }

    #[test]
    fn forged_or_foreign_cursors_are_refused() {
        let cursor = Cursor {
            created_at: Utc::now(),
            key: "bob".into(),
        };
        let likers = cursor.encode(List::Likers);
        assert!(Cursor::decode(List::Comments, &likers).is_err());
        for forged in ["", "!!!", "bDEuMTIz", &URL_SAFE_NO_PAD.encode("l1.nan.bob")] {
            assert!(Cursor::decode(List::Likers, forged).is_err(), "{forged}");
        }
    }
}
