//! Keyset pagination cursors for the newest-first lists (who liked a post, its comments).
//!
//! A cursor names the last row of a page by its sort key, `(created_at, tie-breaker)`; the
//! next page is the rows strictly after it. Unlike an offset, rows added while a client pages
//! shift nothing: every row there before the first page is listed exactly once. (A row added
//! meanwhile may or may not be listed: its `created_at` is its transaction's start, which can
//! fall behind a cursor that passed while it committed.)
//!
//! The cursor is opaque to clients, but its format is exact, and the spec declares it (a
//! `pattern` with its lengths) so that every cursor the spec calls valid gets a page: it is
//! base64url (no padding, canonical) of the list's 3-byte tag, the instant in microseconds as
//! 8 big-endian bytes, and the tie-breaker's bytes (a liker's user id in UTF-8, or a comment's
//! 16-byte id). Any such bytes name a position in the list's order, so a cursor that fits the
//! format is read as that position even when no row is there (a page after it, perhaps
//! empty); only one that does not fit, or is another list's, is refused with a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The latest instant a cursor may name: 9999-12-31T23:59:59Z, in microseconds. Postgres
/// refuses times far beyond it; a cursor past it means the same as one at it.
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_000_000;

/// The bytes of a cursor before its tie-breaker: the tag and the instant.
const HEAD_BYTES: usize = 3 + 8;

/// A list's tie-breaker among rows of one instant, as its cursors carry it.
pub trait PageKey: Sized {
    /// The list's tag, the cursor's first three bytes (one base64 quantum, so the encoded
    /// cursor starts with the tag's four characters whatever follows).
    const TAG: &'static [u8; 3];
    /// The longest tie-breaker in bytes that the list's cursor pattern admits.
    const MAX_KEY_BYTES: usize;

    fn to_bytes(&self) -> Vec<u8>;
    /// Reads any bytes of a length the pattern admits (1 to `MAX_KEY_BYTES`).
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// The likers list: a liker's user id. The pattern admits up to 513 bytes, more than the
/// 128 characters (512 bytes) of the longest user id.
impl PageKey for String {
    const TAG: &'static [u8; 3] = b"l1.";
    const MAX_KEY_BYTES: usize = 513;

    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// Real cursors hold a user id verbatim. Others hold any bytes; they are read as the
    /// nearest text Postgres can compare (invalid UTF-8 and NUL, which no user id has, as
    /// U+FFFD), which names a position as well as any other.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}"))
    }
}

/// The comments list: a comment's id.
impl PageKey for Uuid {
    const TAG: &'static [u8; 3] = b"c1.";
    const MAX_KEY_BYTES: usize = 16;

    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok()
    }
}

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor<K> {
    pub created_at: DateTime<Utc>,
    /// The tie-breaker among rows of the same instant: the user id for likers, the comment
    /// id for comments.
    pub key: K,
}

/// A cursor that is not in this list's format (or is another list's).
#[derive(Debug, thiserror::Error)]
#[error(
    "`cursor` must be the `next_cursor` of a page of this same list; omit it for the first page"
)]
pub struct BadCursor;

impl From<BadCursor> for crate::problem::Problem {
    fn from(err: BadCursor) -> Self {
        Self::bad_request(err.to_string())
    }
}

impl<K: PageKey> Cursor<K> {
    /// The opaque form handed to clients as `next_cursor`.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(HEAD_BYTES + K::MAX_KEY_BYTES);
        raw.extend_from_slice(K::TAG);
        raw.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        raw.extend_from_slice(&self.key.to_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a cursor a client sent back.
    pub fn decode(cursor: &str) -> Result<Self, BadCursor> {
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| BadCursor)?;
        if raw.len() <= HEAD_BYTES || raw.len() > HEAD_BYTES + K::MAX_KEY_BYTES {
            return Err(BadCursor);
        }
        let (head, key) = raw.split_at(HEAD_BYTES);
        let (tag, micros) = head.split_at(3);
        if tag != K::TAG {
            return Err(BadCursor);
        }
        let micros = i64::from_be_bytes(micros.try_into().map_err(|_| BadCursor)?);
        let created_at =
            DateTime::from_timestamp_micros(micros.clamp(0, MAX_CURSOR_MICROS)).ok_or(BadCursor)?;
        Ok(Self {
            created_at,
            key: K::from_bytes(key).ok_or(BadCursor)?,
        })
    }
}

/// A page's size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page a list returns.
pub const MAX_PAGE_SIZE: u32 = 100;

/// What one request for a page of a list asks: how many rows, after which.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    limit: u32,
    pub after: Option<Cursor<K>>,
}

impl<K: PageKey> PageRequest<K> {
    /// Reads the `limit` and `cursor` parameters of a request for a page of the list.
    pub fn new(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, BadCursor> {
        Ok(Self {
            limit: limit.unwrap_or(DEFAULT_PAGE_SIZE).min(MAX_PAGE_SIZE),
            after: cursor.map(Cursor::decode).transpose()?,
        })
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
        key: impl Fn(&T) -> Cursor<K>,
    ) -> (Vec<T>, Option<String>) {
        let limit = self.limit as usize;
        if rows.len() <= limit {
            return (rows, None);
        }
        rows.truncate(limit);
        let next = rows.last().map(|last| key(last).encode());
        (rows, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor parameter's pattern and lengths in the spec, for `operation`.
    fn declared(operation: &str) -> (regex::Regex, usize, usize) {
        let spec: serde_json::Value =
            serde_json::from_str(&crate::spec_json()).expect("the spec is JSON");
        let paths = spec["paths"].as_object().expect("paths");
        let op = paths
            .values()
            .filter_map(|ops| ops.as_object())
            .flat_map(|ops| ops.values())
            .find(|op| op["operationId"] == operation)
            .expect("the operation");
        let param = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "cursor")
            .expect("a cursor parameter");
        let schema = &param["schema"];
        let pattern = schema["pattern"].as_str().expect("a pattern");
        let length = |key: &str| schema[key].as_u64().expect(key) as usize;
        (
            regex::Regex::new(pattern).expect("a valid pattern"),
            length("minLength"),
            length("maxLength"),
        )
    }

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }

    /// Every string of `len` characters made of `prefix` then characters from `alphabet`,
    /// cycled from `seed`: a spread of strings in (or out of) the pattern.
    fn strings(prefix: &str, len: usize, seed: usize) -> Vec<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..ALPHABET.len())
            .map(|i| {
                let mut s = prefix.to_owned();
                for j in prefix.len()..len {
                    s.push(ALPHABET[(i * 7 + j * 13 + seed) % ALPHABET.len()] as char);
                }
                s
            })
            .collect()
    }

    #[test]
    fn a_cursor_round_trips_to_the_microsecond() {
        let likers = Cursor {
            created_at: at(1_764_000_000_123_456),
            key: "bob.the.builder".to_owned(),
        };
        assert_eq!(Cursor::decode(&likers.encode()).ok(), Some(likers));
        let comments = Cursor {
            created_at: at(1_764_000_000_123_456),
            key: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&comments.encode()).ok(), Some(comments));
    }

    #[test]
    fn cursors_the_api_hands_out_match_the_declared_format() {
        let (likers, min, max) = declared("listLikers");
        for key in ["b", "bob", "Ünïcødé 名前", &"😀".repeat(128)] {
            let cursor = Cursor {
                created_at: at(MAX_CURSOR_MICROS),
                key: key.to_owned(),
            }
            .encode();
            assert!(likers.is_match(&cursor), "{key}: {cursor}");
            assert!((min..=max).contains(&cursor.len()), "{key}");
        }
        let (comments, min, max) = declared("listComments");
        let cursor = Cursor {
            created_at: at(0),
            key: Uuid::max(),
        }
        .encode();
        assert!(comments.is_match(&cursor), "{cursor}");
        assert!((min..=max).contains(&cursor.len()));
    }

    #[test]
    fn every_string_of_the_declared_format_is_a_position_in_its_list() {
        let (likers, min, max) = declared("listLikers");
        let mut checked = 0;
        for len in (min..=max).step_by(1) {
            for (seed, s) in strings("bDEu", len, len).into_iter().enumerate() {
                // Only the strings the pattern admits (the last character of a partial
                // quantum is constrained): those must decode, whatever their bytes.
                if likers.is_match(&s) {
                    assert!(Cursor::<String>::decode(&s).is_ok(), "{len}/{seed}: {s}");
                    checked += 1;
                } else {
                    assert!(Cursor::<String>::decode(&s).is_err(), "{len}/{seed}: {s}");
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
        let (comments, min, max) = declared("listComments");
        assert_eq!((min, max), (36, 36));
        for s in strings("YzEu", 36, 0) {
            assert!(comments.is_match(&s));
            assert!(Cursor::<Uuid>::decode(&s).is_ok(), "{s}");
        }
    }

    #[test]
    fn cursors_outside_the_format_or_of_another_list_are_refused() {
        let likers = Cursor {
            created_at: Utc::now(),
            key: "bob".to_owned(),
        }
        .encode();
        assert!(Cursor::<Uuid>::decode(&likers).is_err());
        let (pattern, ..) = declared("listLikers");
        for forged in [
            "",
            "!!!",
            "bDEuMTIz",
            &URL_SAFE_NO_PAD.encode("l1.12345678"),
            &URL_SAFE_NO_PAD.encode(format!("l1.12345678{}", "a".repeat(514))),
            &URL_SAFE_NO_PAD.encode("c1.12345678bob"),
            "bDEuAAAAAAAAAAAAYg=",
            "bDEuAAAAAAAAAAAAYh",
        ] {
            assert!(Cursor::<String>::decode(forged).is_err(), "{forged}");
            assert!(!pattern.is_match(forged), "{forged}");
        }
    }

    #[test]
    fn instants_beyond_what_postgres_holds_are_read_as_the_nearest_it_does() {
        let raw = |micros: i64| {
            let mut raw = b"l1.".to_vec();
            raw.extend_from_slice(&micros.to_be_bytes());
            raw.push(b'a');
            URL_SAFE_NO_PAD.encode(raw)
        };
        let read = |micros| Cursor::<String>::decode(&raw(micros)).map(|c| c.created_at);
        assert_eq!(read(i64::MIN).ok(), Some(at(0)));
        assert_eq!(read(i64::MAX).ok(), Some(at(MAX_CURSOR_MICROS)));
    }

    #[test]
    fn a_page_is_cut_to_its_limit_with_the_cursor_of_its_last_row() {
        let page = PageRequest::<String>::new(Some(2), None).expect("no cursor");
        let rows = vec![(at(3), "c"), (at(2), "b"), (at(1), "a")];
        assert_eq!(page.fetch(), 3);
        let key = |row: &(DateTime<Utc>, &str)| Cursor {
            created_at: row.0,
            key: row.1.to_owned(),
        };
        let (rows, next) = page.finish(rows, key);
        assert_eq!(rows.len(), 2);
        let next = next.expect("a next page");
        let after = PageRequest::<String>::new(Some(2), Some(&next)).expect("our cursor");
        assert_eq!(after.after.as_ref().map(|c| c.key.as_str()), Some("b"));
        let (_, last) = after.finish(vec![(at(1), "a")], key);
        assert_eq!(last, None);
    }
}
