//! Keyset pagination cursors for the newest-first lists (who liked a post, its comments).
//!
//! A cursor names the last row of a page by its sort key, `(created_at, tie-breaker)`; the
//! next page is the rows strictly after it. Unlike an offset, rows added while a client pages
//! shift nothing: every row there before the first page is listed exactly once. (A row added
//! meanwhile may or may not be listed: its `created_at` is its transaction's start, which can
//! fall behind a cursor that passed while it committed.)
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

/// The latest instant a cursor may name: 9999-12-31T23:59:59Z, in microseconds.
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_000_000;

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

impl From<BadCursor> for crate::problem::Problem {
    fn from(err: BadCursor) -> Self {
        Self::bad_request(err.to_string())
    }
}

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
        // Only instants this api could have handed out: Postgres refuses times far outside
        // this span, and a forged one must be a 400, not a failed query.
        let created_at = micros
            .parse::<i64>()
            .ok()
            .filter(|micros| (0..=MAX_CURSOR_MICROS).contains(micros))
            .and_then(DateTime::from_timestamp_micros)
            .ok_or(BadCursor)?;
        Ok(Self {
            created_at,
            key: key.to_owned(),
        })
    }
}

/// A page's size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page a list returns.
pub const MAX_PAGE_SIZE: u32 = 100;

/// What one request for a page of a list asks: how many rows, after which.
#[derive(Debug, Clone)]
pub struct PageRequest {
    list: List,
    limit: u32,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Reads the `limit` and `cursor` parameters of a request for a page of `list`.
    pub fn new(list: List, limit: Option<u32>, cursor: Option<&str>) -> Result<Self, BadCursor> {
        Ok(Self {
            list,
            limit: limit.unwrap_or(DEFAULT_PAGE_SIZE).min(MAX_PAGE_SIZE),
            after: cursor.map(|c| Cursor::decode(list, c)).transpose()?,
        })
    }

    /// The position after which the page starts, its tie-breaker read as a `K` (e.g. the
    /// comment id); a cursor whose key is no `K` was not issued by this list.
    pub fn after_as<K: std::str::FromStr>(&self) -> Result<Option<(DateTime<Utc>, K)>, BadCursor> {
        self.after
            .as_ref()
            .map(|c| Ok((c.created_at, c.key.parse().map_err(|_| BadCursor)?)))
            .transpose()
    }

    /// How many rows to fetch: one more than the page, which tells whether another follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the fetched `rows` to the page, with the cursor of the next page when there is
    /// one; `key` names a row's sort key.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> Cursor,
    ) -> (Vec<T>, Option<String>) {
        let limit = self.limit as usize;
        if rows.len() <= limit {
            return (rows, None);
        }
        rows.truncate(limit);
        let next = rows.last().map(|last| key(last).encode(self.list));
        (rows, next)
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
    fn a_page_is_cut_to_its_limit_with_the_cursor_of_its_last_row() {
        let page = PageRequest::new(List::Likers, Some(2), None).expect("no cursor");
        let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        let rows = vec![(at(3), "c"), (at(2), "b"), (at(1), "a")];
        assert_eq!(page.fetch(), 3);
        let key = |row: &(DateTime<Utc>, &str)| Cursor {
            created_at: row.0,
            key: row.1.into(),
        };
        let (rows, next) = page.finish(rows, key);
        assert_eq!(rows.len(), 2);
        let next = next.expect("a next page");
        let after = PageRequest::new(List::Likers, Some(2), Some(&next)).expect("our cursor");
        assert_eq!(after.after.as_ref().map(|c| c.key.as_str()), Some("b"));
        let (_, last) = after.finish(vec![(at(1), "a")], key);
        assert_eq!(last, None);
    }

    #[test]
    fn forged_or_foreign_cursors_are_refused() {
        let cursor = Cursor {
            created_at: Utc::now(),
            key: "bob".into(),
        };
        let likers = cursor.encode(List::Likers);
        assert!(Cursor::decode(List::Comments, &likers).is_err());
        for forged in [
            "",
            "!!!",
            "bDEuMTIz",
            &URL_SAFE_NO_PAD.encode("l1.nan.bob"),
            &URL_SAFE_NO_PAD.encode("l1.-300000000000000000.bob"),
            &URL_SAFE_NO_PAD.encode("l1.300000000000000000.bob"),
        ] {
            assert!(Cursor::decode(List::Likers, forged).is_err(), "{forged}");
        }
    }
}
