//! The post resources as the api shows them: a post with its counts, the body that creates
//! one, and a feed's answer.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use poem_openapi::types::Example;
use uuid::Uuid;

use crate::examples;
use crate::store::PostRow;

/// A post with its counts.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Post {
    /// The post's id.
    pub id: Uuid,
    /// The user who created the post.
    pub author_id: String,
    /// When the post was created.
    pub created_at: DateTime<Utc>,
    /// How many users like the post. Eventually consistent: it trails writes by the
    /// pipeline's lag (well under a second when healthy).
    pub likes: i64,
    /// How many live comments the post has. Eventually consistent, like `likes`.
    pub comments: i64,
    /// Whether the caller likes the post; only on reads with a bearer token. Ahead of
    /// `likes`: the caller's own like or unlike shows at once (on a feed read, within the
    /// event stream's lag when it went through another api instance).
    #[oai(skip_serializing_if_is_none)]
    pub liked_by_me: Option<bool>,
    /// On write responses, the id of the event this request produced; null when nothing
    /// changed, and on reads.
    pub event_id: Option<Uuid>,
    /// Only when the read asked for `after_event`: whether the counts include that event
    /// (false: it was not counted within the wait, so the counts may trail it).
    #[oai(skip_serializing_if_is_none)]
    pub after_event_applied: Option<bool>,
}

impl Post {
    pub fn from_row(row: PostRow, event_id: Option<Uuid>) -> Self {
        Self {
            id: row.post_id,
            author_id: row.author_id,
            created_at: row.created_at,
            likes: row.likes,
            comments: row.comments,
            liked_by_me: None,
            event_id,
            after_event_applied: None,
        }
    }

    /// A post as a reader sees it: `liked_by_me` set for a signed-in reader.
    pub fn read(row: PostRow, liked: Option<&HashSet<Uuid>>) -> Self {
        let id = row.post_id;
        Self {
            liked_by_me: liked.map(|liked| liked.contains(&id)),
            ..Self::from_row(row, None)
        }
    }
}

impl Example for Post {
    fn example() -> Self {
        Self {
            id: examples::post_id(),
            author_id: examples::AUTHOR.into(),
            created_at: examples::time(),
            likes: 42,
            comments: 7,
            liked_by_me: Some(true),
            event_id: None,
            after_event_applied: None,
        }
    }
}

/// The body of `POST /v1/posts`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct NewPost {
    /// The post's id, chosen by the caller so retries are idempotent; a new UUIDv7 when
    /// omitted.
    pub id: Option<Uuid>,
}

impl Example for NewPost {
    fn example() -> Self {
        Self {
            id: Some(examples::post_id()),
        }
    }
}

/// Posts read by id, for a feed.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Feed {
    /// The posts found, in the order their ids were asked for (each once).
    pub posts: Vec<Post>,
    /// The ids asked for that name no post (never created, or deleted).
    pub missing: Vec<Uuid>,
    /// Only when the read asked for `after_event`: whether the counts include that event.
    #[oai(skip_serializing_if_is_none)]
    pub after_event_applied: Option<bool>,
}

impl Example for Feed {
    fn example() -> Self {
        Self {
            posts: vec![Post::example()],
            missing: vec![examples::other_post_id()],
            after_event_applied: None,
        }
    }
}

/// The most ids one feed read may ask for.
pub const MAX_FEED_IDS: usize = 100;
