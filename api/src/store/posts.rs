//! Posts: creating, reading (with counts, and which of them a user likes) and deleting.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tally_sql::{Event, EventType};
use tracing::instrument;
use uuid::Uuid;

use super::{EventContext, Store, StoreError, insert_outbox};

/// A post as stored, with its counts.
#[derive(Debug, Clone)]
pub struct PostRow {
    pub post_id: Uuid,
    pub author_id: String,
    pub created_at: DateTime<Utc>,
    pub likes: i64,
    pub comments: i64,
}

/// A post with when its counts last changed (`post_counts.updated_at`; none before its
/// first like or comment is counted).
#[derive(Debug, Clone)]
pub struct VersionedPost {
    pub row: PostRow,
    pub counts_at: Option<DateTime<Utc>>,
}

/// The feed's query (the bench runs the same one in pgbench, scenario 6): the live posts
/// among `$1` with their counts.
pub const FEED_QUERY: &str = "SELECT p.post_id, p.author_id, p.created_at,
        coalesce(c.likes, 0), coalesce(c.comments, 0), c.updated_at
 FROM posts p LEFT JOIN post_counts c USING (post_id)
 WHERE p.post_id = ANY($1) AND p.deleted_at IS NULL";

/// A [`PostRow`] from a row whose first five columns are the post's and its counts.
fn post_row(row: &tokio_postgres::Row) -> PostRow {
    PostRow {
        post_id: row.get(0),
        author_id: row.get(1),
        created_at: row.get(2),
        likes: row.get(3),
        comments: row.get(4),
    }
}

/// What creating a post did.
#[derive(Debug)]
pub enum CreatePost {
    Created {
        post: PostRow,
        event_id: Uuid,
    },
    /// The caller already created this post: nothing changed.
    Exists(PostRow),
    /// The id belongs to another author's post (live or deleted).
    Taken,
    /// The caller created this post and then deleted it: its id stays spent.
    Deleted,
}

/// What deleting a post did.
#[derive(Debug)]
pub enum DeletePost {
    Deleted {
        event_id: Uuid,
    },
    /// The caller had deleted it before: nothing changed.
    AlreadyDeleted,
    /// The post is someone else's.
    NotAuthor,
    /// No such post, or someone else's deleted one.
    NotFound,
}

impl Store {
    #[instrument(skip(self, ctx))]
    pub async fn create_post(
        &self,
        post_id: Uuid,
        author_id: &str,
        ctx: &EventContext,
    ) -> Result<CreatePost, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let inserted = txn
            .query_opt(
                "INSERT INTO posts (post_id, author_id) VALUES ($1, $2)
                 ON CONFLICT (post_id) DO NOTHING
                 RETURNING created_at",
                &[&post_id, &author_id],
            )
            .await?;
        if let Some(row) = inserted {
            let event = Event::new(EventType::PostCreated, post_id, author_id, author_id);
            insert_outbox(&txn, &event, ctx).await?;
            txn.commit().await?;
            let post = PostRow {
                post_id,
                author_id: author_id.to_owned(),
                created_at: row.get(0),
                likes: 0,
                comments: 0,
            };
            return Ok(CreatePost::Created {
                post,
                event_id: event.id,
            });
        }
        // The conflicting post committed before this statement began, so a new statement
        // (read committed) sees it, deleted or not.
        let owner = txn
            .query_one(
                "SELECT author_id, deleted_at IS NOT NULL FROM posts WHERE post_id = $1",
                &[&post_id],
            )
            .await?;
        drop(txn);
        let (owner, deleted): (String, bool) = (owner.get(0), owner.get(1));
        if owner != author_id {
            return Ok(CreatePost::Taken);
        }
        if deleted {
            return Ok(CreatePost::Deleted);
        }
        // Only its author deletes a post, so a None here is the caller's own delete racing.
        Ok(match self.get_post(post_id).await? {
            Some(post) => CreatePost::Exists(post),
            None => CreatePost::Deleted,
        })
    }

    /// A live (not deleted) post with its counts.
    #[instrument(skip(self))]
    pub async fn get_post(&self, post_id: Uuid) -> Result<Option<PostRow>, StoreError> {
        Ok(self.get_posts(&[post_id]).await?.pop())
    }

    /// The live posts among `post_ids`, with their counts, in one query.
    #[instrument(skip(self, post_ids), fields(ids = post_ids.len()))]
    pub async fn get_posts(&self, post_ids: &[Uuid]) -> Result<Vec<PostRow>, StoreError> {
        Ok(self
            .get_versioned_posts(post_ids)
            .await?
            .into_iter()
            .map(|post| post.row)
            .collect())
    }

    /// As [`Store::get_posts`], with when each post's counts last changed, so a cache can
    /// tell an older read from a newer count event. The feed's own query: prepared once per
    /// connection, since a cold feed read is this query and little else.
    #[instrument(skip(self, post_ids), fields(ids = post_ids.len()))]
    pub async fn get_versioned_posts(
        &self,
        post_ids: &[Uuid],
    ) -> Result<Vec<VersionedPost>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(FEED_QUERY).await?;
        let rows = client.query(&statement, &[&post_ids]).await?;
        Ok(rows
            .iter()
            .map(|row| VersionedPost {
                row: post_row(row),
                counts_at: row.get(5),
            })
            .collect())
    }

    /// A live post with its counts and, for a signed-in reader, whether they like it: one
    /// query on one connection.
    #[instrument(skip(self))]
    pub async fn get_post_for(
        &self,
        post_id: Uuid,
        viewer: Option<&str>,
    ) -> Result<Option<(PostRow, Option<bool>)>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT p.post_id, p.author_id, p.created_at,
                        coalesce(c.likes, 0), coalesce(c.comments, 0),
                        CASE WHEN $2::text IS NULL THEN NULL ELSE EXISTS (
                            SELECT 1 FROM likes l WHERE l.post_id = p.post_id AND l.user_id = $2
                        ) END
                 FROM posts p LEFT JOIN post_counts c USING (post_id)
                 WHERE p.post_id = $1 AND p.deleted_at IS NULL",
                &[&post_id, &viewer],
            )
            .await?;
        Ok(row.map(|row| (post_row(&row), row.get(5))))
    }

    /// Which of `post_ids` `user_id` likes, in one query (the likes primary key answers it).
    #[instrument(skip(self, post_ids), fields(ids = post_ids.len()))]
    pub async fn liked_by(
        &self,
        user_id: &str,
        post_ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT post_id FROM likes WHERE post_id = ANY($1) AND user_id = $2",
                &[&post_ids, &user_id],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Marks the post deleted, when `user_id` is its author. Its likes and comments stay
    /// (the counts stay exact), and can still be taken back, but no new ones can be added.
    #[instrument(skip(self, ctx))]
    pub async fn delete_post(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<DeletePost, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        // Who may delete it is read without a lock: only its author ever takes the lock, so
        // no one else can stall the likes and comments being written to a post.
        let Some(row) = txn
            .query_opt(
                "SELECT author_id, deleted_at IS NOT NULL FROM posts WHERE post_id = $1",
                &[&post_id],
            )
            .await?
        else {
            return Ok(DeletePost::NotFound);
        };
        let (author, deleted): (String, bool) = (row.get(0), row.get(1));
        if author != user_id {
            // Someone else's deleted post is as gone for them as for a read.
            return Ok(if deleted {
                DeletePost::NotFound
            } else {
                DeletePost::NotAuthor
            });
        }
        // FOR UPDATE: waits for the likes and comments being written to this post (they hold
        // it FOR SHARE), and they wait for the delete and then see it.
        let deleted: bool = txn
            .query_one(
                "SELECT deleted_at IS NOT NULL FROM posts WHERE post_id = $1 FOR UPDATE",
                &[&post_id],
            )
            .await?
            .get(0);
        if deleted {
            return Ok(DeletePost::AlreadyDeleted);
        }
        txn.execute(
            "UPDATE posts SET deleted_at = now() WHERE post_id = $1",
            &[&post_id],
        )
        .await?;
        let event = Event::new(EventType::PostDeleted, post_id, &author, user_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(DeletePost::Deleted { event_id: event.id })
    }
}
