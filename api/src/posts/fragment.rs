//! A post's JSON kept ready in the counts cache, so a feed read is assembled by copying bytes
//! instead of building and serializing 50 posts through `serde_json` values (the largest
//! cost of a warm feed read). The bytes are exactly what the derived serializers of
//! `Post` and `Feed` write; the unit tests below hold them to it, so a field added to either
//! (or a change in how they are written) fails here rather than in a client.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::store::PostRow;

/// One post's JSON as an anonymous reader gets it, with the place where a signed-in
/// reader's `liked_by_me` goes.
#[derive(Debug, Clone)]
pub struct PostJson {
    bytes: Bytes,
    liked_at: usize,
}

impl PostJson {
    /// Written field by field, in the order the derived serializer writes them (by name),
    /// rather than through a `serde_json::Value` tree: a cold feed read builds fifty of
    /// these, and a count event one.
    pub fn of(row: &PostRow) -> Self {
        let mut out = Vec::with_capacity(128 + row.author_id.len());
        out.extend_from_slice(br#"{"author_id":"#);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &row.author_id);
        out.extend_from_slice(br#","comments":"#);
        out.extend_from_slice(itoa::Buffer::new().format(row.comments).as_bytes());
        out.extend_from_slice(br#","created_at":""#);
        // As poem-openapi writes a `DateTime<Utc>`; it needs no escaping.
        out.extend_from_slice(row.created_at.to_rfc3339().as_bytes());
        out.extend_from_slice(br#"","event_id":null,"id":""#);
        out.extend_from_slice(
            row.post_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        let liked_at = out.len() + 1;
        out.extend_from_slice(br#"","likes":"#);
        out.extend_from_slice(itoa::Buffer::new().format(row.likes).as_bytes());
        out.push(b'}');
        Self {
            bytes: Bytes::from(out),
            liked_at,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len() + r#","liked_by_me":false"#.len()
    }

    fn write(&self, out: &mut BytesMut, liked_by_me: Option<bool>) {
        match liked_by_me {
            None => out.put_slice(&self.bytes),
            Some(liked) => {
                out.put_slice(&self.bytes[..self.liked_at]);
                out.put_slice(if liked {
                    br#","liked_by_me":true"#
                } else {
                    br#","liked_by_me":false"#
                });
                out.put_slice(&self.bytes[self.liked_at..]);
            }
        }
    }
}

/// A feed read's body (no `after_event`): the posts found, each with the reader's
/// `liked_by_me` when signed in, then the ids that name none.
pub fn feed<'a>(
    posts: impl ExactSizeIterator<Item = (&'a PostJson, Option<bool>)> + Clone,
    missing: &[Uuid],
) -> Bytes {
    let size = posts.clone().map(|(post, _)| post.len() + 1).sum::<usize>() + missing.len() * 39;
    let mut out = BytesMut::with_capacity(size + 32);
    out.put_slice(br#"{"missing":["#);
    for (i, id) in missing.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_u8(b'"');
        out.put_slice(
            id.hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.put_u8(b'"');
    }
    out.put_slice(br#"],"posts":["#);
    for (i, (post, liked)) in posts.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        post.write(&mut out, liked);
    }
    out.put_slice(b"]}");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use poem_openapi::types::ToJSON;

    use super::*;
    use crate::posts::model::{Feed, Post};

    fn row(n: u128, author: &str, created_micros: i64) -> PostRow {
        PostRow {
            post_id: Uuid::from_u128(n),
            author_id: author.into(),
            created_at: DateTime::from_timestamp_micros(created_micros).unwrap_or_default(),
            likes: n as i64 * 1000,
            comments: n as i64,
        }
    }

    fn derived(rows: &[PostRow], liked: Option<&[bool]>, missing: &[Uuid]) -> String {
        Feed {
            posts: rows
                .iter()
                .enumerate()
                .map(|(i, row)| Post {
                    liked_by_me: liked.map(|liked| liked[i]),
                    ..Post::from_row(row.clone(), None)
                })
                .collect(),
            missing: missing.to_vec(),
            after_event_applied: None,
        }
        .to_json_string()
    }

    #[test]
    fn a_feed_from_fragments_is_byte_for_byte_the_derived_json() {
        let rows = [
            row(1, "alice", 1_764_637_200_123_456),
            row(
                2,
                "bob \"the\" \\ builder ,\"likes\":",
                1_764_637_200_000_000,
            ),
            row(3, "zoë 🦀\u{1}", 0),
        ];
        let fragments: Vec<PostJson> = rows.iter().map(PostJson::of).collect();
        let missing = [Uuid::from_u128(7), Uuid::from_u128(u128::MAX)];
        for liked in [None, Some([true, false, true].as_slice())] {
            for missing in [&missing[..], &[]] {
                let built = feed(
                    fragments
                        .iter()
                        .enumerate()
                        .map(|(i, json)| (json, liked.map(|liked| liked[i]))),
                    missing,
                );
                assert_eq!(
                    std::str::from_utf8(&built).unwrap_or_default(),
                    derived(&rows, liked, missing)
                );
            }
        }
    }

    #[test]
    fn an_empty_feed_is_the_derived_json() {
        let built = feed(std::iter::empty::<(&PostJson, Option<bool>)>(), &[]);
        assert_eq!(&built[..], derived(&[], None, &[]).as_bytes());
    }
}
