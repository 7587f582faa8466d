//! Likes: liking, unliking and toggling (one event per real change), and who liked a post.

use chrono::{DateTime, Utc};
use tally_sql::{Event, EventType};
use tracing::instrument;
use uuid::Uuid;

use super::{
    CONTENDED_ATTEMPTS, EventContext, PostForWrite, Store, StoreError, insert_outbox,
    outbox_headers, post_for_write,
};

/// What liking a post did.
#[derive(Debug)]
pub enum AddLike {
    Added {
        created_at: DateTime<Utc>,
        event_id: Uuid,
    },
    AlreadyLiked {
        created_at: DateTime<Utc>,
    },
    PostNotFound,
}

/// What unliking a post did.
#[derive(Debug)]
pub enum RemoveLike {
    Removed { event_id: Uuid },
    NotLiked,
    PostNotFound,
}

/// What toggling a like did.
#[derive(Debug)]
pub enum ToggleLike {
    /// `liked`: the state after the toggle; `event_id`: the event it wrote.
    Toggled {
        liked: bool,
        event_id: Uuid,
    },
    PostNotFound,
}

/// One user who likes a post, and since when.
#[derive(Debug, Clone)]
pub struct Liker {
    pub user_id: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Likes the post: queued for group commit (see `group_commit`); answers once the like
    /// and its outbox row are committed.
    #[instrument(skip(self, ctx))]
    pub async fn add_like(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<AddLike, StoreError> {
        self.likes
            .add(post_id, user_id, outbox_headers(ctx))
            .await
            .unwrap_or(Err(StoreError::Stopped))
    }

    #[instrument(skip(self, ctx))]
    pub async fn remove_like(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<RemoveLike, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        // A deleted post still takes its likes back: the count stays exact.
        let Some(PostForWrite { author, .. }) = post_for_write(&txn, post_id).await? else {
            return Ok(RemoveLike::PostNotFound);
        };
        let deleted = txn
            .execute(
                "DELETE FROM likes WHERE post_id = $1 AND user_id = $2",
                &[&post_id, &user_id],
            )
            .await?;
        if deleted == 0 {
            return Ok(RemoveLike::NotLiked);
        }
        let event = Event::new(EventType::LikeRemoved, post_id, &author, user_id);
        insert_outbox(&txn, &event, ctx).await?;
        txn.commit().await?;
        Ok(RemoveLike::Removed { event_id: event.id })
    }

    /// Likes the post when the caller does not, unlikes it when they do: one transaction,
    /// one event.
    #[instrument(skip(self, ctx))]
    pub async fn toggle_like(
        &self,
        post_id: Uuid,
        user_id: &str,
        ctx: &EventContext,
    ) -> Result<ToggleLike, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let Some(PostForWrite { author, deleted }) = post_for_write(&txn, post_id).await? else {
            return Ok(ToggleLike::PostNotFound);
        };
        // Unlike if liked, else like. When the insert meets a like that the caller's own
        // concurrent toggle committed after this delete looked, flip that one: two toggles
        // are a like and an unlike, never two likes.
        for _ in 0..CONTENDED_ATTEMPTS {
            let removed = txn
                .execute(
                    "DELETE FROM likes WHERE post_id = $1 AND user_id = $2",
                    &[&post_id, &user_id],
                )
                .await?;
            let (liked, event_type) = if removed > 0 {
                (false, EventType::LikeRemoved)
            } else if deleted {
                // Turning a like off works on a deleted post; turning one on does not.
                return Ok(ToggleLike::PostNotFound);
            } else {
                let inserted = txn
                    .execute(
                        "INSERT INTO likes (post_id, user_id) VALUES ($1, $2)
                         ON CONFLICT (post_id, user_id) DO NOTHING",
                        &[&post_id, &user_id],
                    )
                    .await?;
                if inserted == 0 {
                    continue;
                }
                (true, EventType::LikeAdded)
            };
            let event = Event::new(event_type, post_id, &author, user_id);
            insert_outbox(&txn, &event, ctx).await?;
            txn.commit().await?;
            return Ok(ToggleLike::Toggled {
                liked,
                event_id: event.id,
            });
        }
        Err(StoreError::Contended(CONTENDED_ATTEMPTS))
    }

    /// Who likes a live post, newest first: at most `limit` after `after`. None when the
    /// post does not exist or was deleted.
    #[instrument(skip(self))]
    pub async fn likers(
        &self,
        post_id: Uuid,
        after: Option<(DateTime<Utc>, &str)>,
        limit: i64,
    ) -> Result<Option<Vec<Liker>>, StoreError> {
        let client = self.pool.get().await?;
        let (after_at, after_user) = after.unzip();
        // One round trip: the post's row decides between "no such post" and "no likers".
        let rows = client
            .query(
                "SELECT l.user_id, l.created_at
                 FROM posts p
                 LEFT JOIN LATERAL (
                     SELECT user_id, created_at FROM likes
                     WHERE post_id = p.post_id
                       AND ($2::timestamptz IS NULL OR (created_at, user_id) < ($2, $3))
                     ORDER BY created_at DESC, user_id DESC
                     LIMIT $4
                 ) l ON true
                 WHERE p.post_id = $1 AND p.deleted_at IS NULL",
                &[&post_id, &after_at, &after_user, &limit],
            )
            .await?;
        Ok(super::page_through_post(&rows, |row| {
            Some(Liker {
                user_id: row.get::<_, Option<String>>(0)?,
                created_at: row.get::<_, Option<DateTime<Utc>>>(1)?,
            })
        }))
    }
}
