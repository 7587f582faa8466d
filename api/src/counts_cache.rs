//! A short-lived cache of posts with their counts, so a feed read hits Postgres at most once
//! per post per TTL however many readers ask, and a batch read fetches all its misses in one
//! query. Counts are eventually consistent anyway; the TTL (at most a second by default)
//! adds at most that much to their lag. Reads that need exactness (`after_event`) bypass it.

use std::collections::HashMap;
use std::time::Duration;

use moka::future::Cache;
use prometheus_client::metrics::counter::Counter;
use uuid::Uuid;

use crate::metrics::{CacheLabels, Metrics};
use crate::store::{PostRow, Store, StoreError};

/// Posts kept at most; a feed page is 100 ids, so this holds many readers' pages.
const CAPACITY: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct CountsCache {
    /// `None`: the post does not exist (or was deleted); cached too, so unknown ids cost
    /// no more than known ones.
    posts: Cache<Uuid, Option<PostRow>>,
    /// The two series of the lookups counter, looked up once here rather than by label on
    /// every read (a feed read is the most frequent request).
    hits: Counter,
    misses: Counter,
}

impl CountsCache {
    pub fn new(ttl: Duration, metrics: Metrics) -> Self {
        let series = |result| {
            metrics
                .counts_cache
                .get_or_create(&CacheLabels { result })
                .clone()
        };
        Self {
            hits: series("hit"),
            misses: series("miss"),
            posts: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// The posts among `ids` (None for an unknown id), from the cache where fresh and with
    /// one query for all the rest.
    pub async fn posts(
        &self,
        store: &Store,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Option<PostRow>>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut misses = Vec::new();
        for id in ids {
            match self.posts.get(id).await {
                Some(post) => {
                    found.insert(*id, post);
                }
                None => misses.push(*id),
            }
        }
        let hits = ids.len() - misses.len();
        self.hits.inc_by(hits as u64);
        self.misses.inc_by(misses.len() as u64);
        if !misses.is_empty() {
            let mut fetched: HashMap<Uuid, PostRow> = store
                .get_posts(&misses)
                .await?
                .into_iter()
                .map(|post| (post.post_id, post))
                .collect();
            for id in misses {
                let post = fetched.remove(&id);
                self.posts.insert(id, post.clone()).await;
                found.insert(id, post);
            }
        }
        Ok(found)
    }

    /// Drops `post_id`, e.g. after it was deleted here.
    pub async fn forget(&self, post_id: Uuid) {
        self.posts.invalidate(&post_id).await;
    }
}
