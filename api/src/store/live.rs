//! The counts a live stream starts from and repairs itself with: each post's counts with the
//! time they last changed, which orders them against the updater's count events.

use chrono::{DateTime, Utc};
use tracing::instrument;
use uuid::Uuid;

use super::{Store, StoreError};

/// A live post's counts as of `updated_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostCounts {
    pub post_id: Uuid,
    pub likes: i64,
    pub comments: i64,
    /// When the updater last changed them (the post's creation while it has none).
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// The counts of the live posts among `post_ids` (deleted and unknown ones are absent),
    /// in one query.
    #[instrument(skip_all, fields(posts = post_ids.len()))]
    pub async fn live_counts(&self, post_ids: &[Uuid]) -> Result<Vec<PostCounts>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT p.post_id, coalesce(c.likes, 0), coalesce(c.comments, 0),
                        coalesce(c.updated_at, p.created_at)
                 FROM posts p LEFT JOIN post_counts c USING (post_id)
                 WHERE p.post_id = ANY($1) AND p.deleted_at IS NULL",
                &[&post_ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| PostCounts {
                post_id: row.get(0),
                likes: row.get(1),
                comments: row.get(2),
                updated_at: row.get(3),
            })
            .collect())
    }
}
