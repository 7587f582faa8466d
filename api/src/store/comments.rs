//! Comments: adding (idempotent on a client-chosen id), removing (by the comment's author or
//! the post's), and listing a post's live comments newest first.

use chrono::{DateTime, Utc};
use tally_sql::{Event, EventType};
use tracing::instrument;
use uuid::Uuid;

use super::{EventContext, Store, StoreError, insert_outbox, live_post_author};

/// A comment as stored.
#[derive(Debug, Clone)]
pub struct Comment {
    pub comment_id: Uuid,
    pub post_id: Uuid,
    pub author_id: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// What adding a comment did.
#[derive(Debug)]
pub enum AddComment {
    Created {
        comment: Comment,
        event_id: Uuid,
    },
    /// The caller already made this comment (same id, post and body): nothing changed.
    Exists(Comment),
    /// The id belongs to another comment (another author, post or body, or a deleted one).
    Taken,
    PostNotFound,
}

/// What removing a comment did.
#[derive(Debug)]
pub enum RemoveComment {
    Removed {
        event_id: Uuid,
    },
    /// It had been removed before: nothing changed.
    AlreadyRemoved,
    /// The caller wrote neither the comment nor the post.
    NotAllowed,
    /// No such comment.
    NotFound,
}

impl Store {
    #[instrument(skip(self, body, ctx), fields(body_chars = body.chars().count()))]
    pub async fn add_comment(
        &self,
        post_id: Uuid,
        comment_id: Uuid,
        author_id: &str,
        body: &str,
        ctx: &EventContext,
    ) -> Result<AddComment, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let Some(post_author) = live_post_author(&txn, post_id).await? else {
            return Ok(AddComment::PostNotFound);
        };
        let inserted = txn
            .query_opt(
                "INSERT INTO comments (comment_id, post_id, author_id, body)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (comment_id) DO NOTHING
                 RETURNING created_at",
                &[&comment_id, &post_id, &author_id, &body],
            )
            .await?;
        let Some(row) = inserted else {
            let existing = txn
                .query_opt(
                    "SELECT post_id, author_id, body, created_at FROM comments
                     WHERE comment_id = $1 AND deleted_at IS NULL",
                    &[&comment_id],
                )
                .await?;
            return Ok(match existing {
                Some(row)
                    if row.get::<_, Uuid>(0) == post_id
                        && row.get::<_, &str>(1) == author_id
                        && row.get::<_, &str>(2) == body =>
                {
                    AddComment::Exists(Comment {
                        comment_id,
                        post_id,
                        author_id: author_id.to_owned(),
                        body: body.to_owned(),
                        created_at: row.get(3),
                    })
                }
                _ => AddComment::Taken,
            });
        };
        let mut event = Event::new(EventType::CommentAdded, post_id, &post_author, author_id);
        event.comment_id = Some(comment_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(AddComment::Created {
            comment: Comment {
                comment_id,
                post_id,
                author_id: author_id.to_owned(),
                body: body.to_owned(),
                created_at: row.get(0),
            },
            event_id: event.id,
        })
    }

    /// Removes a comment when `user_id` wrote it or owns its post.
    #[instrument(skip(self, ctx))]
    pub async fn remove_comment(
        &self,
        comment_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<RemoveComment, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        // The comment locked for the update; its post FOR SHARE, as every write to a post's
        // likes and comments does, so a concurrent post delete is ordered with this one. A
        // deleted post's comments can still be removed: the count stays exact.
        let Some(row) = txn
            .query_opt(
                "SELECT c.post_id, c.author_id, c.deleted_at IS NOT NULL, p.author_id
                 FROM comments c JOIN posts p USING (post_id)
                 WHERE c.comment_id = $1
                 FOR UPDATE OF c FOR SHARE OF p",
                &[&comment_id],
            )
            .await?
        else {
            return Ok(RemoveComment::NotFound);
        };
        let (post_id, comment_author, removed, post_author): (Uuid, String, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if user_id != comment_author && user_id != post_author {
            return Ok(RemoveComment::NotAllowed);
        }
        if removed {
            return Ok(RemoveComment::AlreadyRemoved);
        }
        txn.execute(
            "UPDATE comments SET deleted_at = now() WHERE comment_id = $1",
            &[&comment_id],
        )
        .await?;
        let mut event = Event::new(EventType::CommentRemoved, post_id, &post_author, user_id);
        event.comment_id = Some(comment_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(RemoveComment::Removed { event_id: event.id })
    }

    /// A live post's live comments, newest first: at most `limit` after `after`. None when
    /// the post does not exist or was deleted.
    #[instrument(skip(self))]
    pub async fn comments(
        &self,
        post_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Option<Vec<Comment>>, StoreError> {
        let client = self.pool.get().await?;
        let (after_at, after_id) = after.unzip();
        // One round trip: the post's row decides between "no such post" and "no comments".
        let rows = client
            .query(
                "SELECT c.comment_id, c.author_id, c.body, c.created_at
                 FROM posts p
                 LEFT JOIN LATERAL (
                     SELECT comment_id, author_id, body, created_at FROM comments
                     WHERE post_id = p.post_id AND deleted_at IS NULL
                       AND ($2::timestamptz IS NULL OR (created_at, comment_id) < ($2, $3))
                     ORDER BY created_at DESC, comment_id DESC
                     LIMIT $4
                 ) c ON true
                 WHERE p.post_id = $1 AND p.deleted_at IS NULL",
                &[&post_id, &after_at, &after_id, &limit],
            )
            .await?;
        Ok(super::page_through_post(&rows, |row| {
            Some(Comment {
                comment_id: row.get::<_, Option<Uuid>>(0)?,
                post_id,
                author_id: row.get::<_, Option<String>>(1)?,
                body: row.get::<_, Option<String>>(2)?,
                created_at: row.get::<_, Option<DateTime<Utc>>>(3)?,
            })
        }))
    }
}
