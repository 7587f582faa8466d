//! The cache of posts with their counts behind feed reads: each post kept with its JSON
//! ready to copy, updated in place by the updater's count events (so a like shows in a warm
//! read within the pipeline's lag), and read again from Postgres in the background once it
//! is older than `TALLY_COUNTS_CACHE_TTL_MS`, which bounds what a lost count event, a post
//! created or deleted through another api instance can leave stale. Concurrent readers that
//! miss the same post share one query; a batch's misses go in one query. Reads that need
//! exactness (`after_event`) bypass it; a TTL of 0 turns it off.

mod loading;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use quick_cache::UnitWeighter;
use quick_cache::sync::{Cache, DefaultLifecycle, EntryAction, EntryResult};
use tally_sql::CountsChanged;
use uuid::Uuid;

use crate::metrics::{CacheLabels, Metrics};
use crate::posts::fragment::PostJson;
use crate::store::{PostRow, Store, StoreError, VersionedPost};
use loading::Loading;

/// Posts kept at most; a feed page is up to 100 ids, so this holds many readers' pages.
const CAPACITY: usize = 100_000;

/// quick_cache rather than moka (which the api used before): a warm feed read is up to 100
/// lookups, and a quick_cache hit is a shard's read lock and a flag, where moka's records
/// every read for its eviction policy (8% of a warm read's CPU). Posts read least leave
/// first once it is full; there is no expiry, the TTL decides only when a post is read
/// again. foldhash instead of SipHash: the keys are post ids, hashed up to 100 times a read.
/// The maps of one read's posts by id, hashed as the cache is.
type ById<V> = std::collections::HashMap<Uuid, V, foldhash::fast::RandomState>;

type Posts = Cache<
    Uuid,
    Arc<Lookup>,
    UnitWeighter,
    foldhash::fast::RandomState,
    DefaultLifecycle<Uuid, Arc<Lookup>>,
>;

/// What the cache knows of one id.
#[derive(Debug)]
pub struct Lookup {
    /// `None`: no live post has this id (never created, or deleted); kept too, so unknown
    /// ids cost no more than known ones.
    post: Option<CachedPost>,
    /// When it was last read from Postgres.
    read_at: Instant,
}

impl Lookup {
    pub fn post(&self) -> Option<&CachedPost> {
        self.post.as_ref()
    }
}

/// A live post with its counts, as JSON ready to copy into a feed.
#[derive(Debug, Clone)]
pub struct CachedPost {
    pub row: PostRow,
    pub json: PostJson,
    /// When its counts last changed; a count event or a read older than this is ignored.
    counts_at: Option<DateTime<Utc>>,
}

impl CachedPost {
    fn new(post: VersionedPost) -> Self {
        Self {
            json: PostJson::of(&post.row),
            row: post.row,
            counts_at: post.counts_at,
        }
    }

    fn with_counts(&self, counts: &CountsChanged) -> Self {
        Self::new(VersionedPost {
            row: PostRow {
                likes: counts.likes,
                comments: counts.comments,
                ..self.row.clone()
            },
            counts_at: Some(counts.updated_at),
        })
    }
}

/// Cheap to clone: the clones share one cache.
#[derive(Debug, Clone)]
pub struct CountsCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None`: the cache is off (a TTL of 0) and every read asks Postgres.
    posts: Option<Posts>,
    loading: Loading,
    fresh_for: Duration,
    /// The series of the lookups counter, looked up once here rather than by label on
    /// every read (a feed read is the most frequent request).
    hits: Counter,
    misses: Counter,
    queries: Counter,
}

impl CountsCache {
    /// A cache whose posts are read again once older than `ttl` (0: no cache).
    pub fn new(ttl: Duration, metrics: &Metrics) -> Self {
        let series = |result| {
            metrics
                .counts_cache
                .get_or_create(&CacheLabels { result })
                .clone()
        };
        let posts = (!ttl.is_zero()).then(|| {
            Cache::with(
                CAPACITY,
                CAPACITY as u64,
                UnitWeighter,
                foldhash::fast::RandomState::default(),
                DefaultLifecycle::default(),
            )
        });
        Self {
            inner: Arc::new(Inner {
                posts,
                loading: Loading::default(),
                fresh_for: ttl,
                hits: series("hit"),
                misses: series("miss"),
                queries: metrics.counts_cache_queries.clone(),
            }),
        }
    }

    /// What is known of each of `ids` (in their order): from the cache where present, with
    /// one query for the rest, shared with concurrent readers missing the same posts.
    /// Posts older than the TTL are answered from the cache and read again in the
    /// background.
    pub async fn posts(&self, store: &Store, ids: &[Uuid]) -> Result<Vec<Arc<Lookup>>, StoreError> {
        let Some(cache) = &self.inner.posts else {
            self.inner.misses.inc_by(ids.len() as u64);
            let fetched = self.query(store, ids).await?;
            return Ok(ids.iter().map(|id| fetched[id].clone()).collect());
        };
        let now = Instant::now();
        let mut found = Vec::with_capacity(ids.len());
        let (mut missed, mut stale) = (Vec::new(), Vec::new());
        for id in ids {
            match cache.get(id) {
                Some(lookup) if now.duration_since(lookup.read_at) < self.inner.fresh_for => {
                    found.push(Some(lookup));
                }
                // A known post is served while it is read again; an unknown id is read now,
                // so a post created through another instance shows within the TTL.
                Some(lookup) if lookup.post.is_some() => {
                    stale.push(*id);
                    found.push(Some(lookup));
                }
                _ => {
                    missed.push(*id);
                    found.push(None);
                }
            }
        }
        self.inner.hits.inc_by((ids.len() - missed.len()) as u64);
        self.inner.misses.inc_by(missed.len() as u64);
        if !stale.is_empty() {
            self.refresh_in_background(store.clone(), &stale);
        }
        let loaded = if missed.is_empty() {
            ById::default()
        } else {
            self.load(store, &missed).await?
        };
        Ok(found
            .into_iter()
            .zip(ids)
            .map(|(lookup, id)| lookup.unwrap_or_else(|| loaded[id].clone()))
            .collect())
    }

    /// Takes a count event: a cached post whose counts are older gets these.
    pub fn counts_changed(&self, counts: &CountsChanged) {
        let Some(cache) = &self.inner.posts else {
            return;
        };
        // Most events are for posts this instance has not cached: a read lock tells, where
        // `entry` would take the shard's write lock and make and drop a placeholder.
        if !cache.contains_key(&counts.post_id) {
            return;
        }
        // Under the shard's write lock, so a concurrent read's result cannot slip between
        // the comparison and the update. A post evicted meanwhile stays absent.
        let _ = cache.entry(&counts.post_id, None, |_, lookup| {
            if let Some(post) = &lookup.post
                && post.counts_at.is_none_or(|at| at < counts.updated_at)
            {
                *lookup = Arc::new(Lookup {
                    post: Some(post.with_counts(counts)),
                    read_at: lookup.read_at,
                });
            }
            EntryAction::Retain(())
        });
    }

    /// Drops `post_id`, after it was created or deleted through this instance.
    pub fn forget(&self, post_id: Uuid) {
        if let Some(cache) = &self.inner.posts {
            cache.remove(&post_id);
        }
    }

    /// The misses' lookups: read by this call, or by the concurrent call already reading
    /// them (read again here if that one failed or was cancelled).
    async fn load(&self, store: &Store, ids: &[Uuid]) -> Result<ById<Arc<Lookup>>, StoreError> {
        let (claim, others) = self.inner.loading.claim(ids);
        let mut loaded = if claim.ids().is_empty() {
            ById::default()
        } else {
            self.query(store, claim.ids()).await?
        };
        drop(claim);
        for other in others {
            other.finished().await;
        }
        let cache = self.inner.posts.as_ref();
        let mut again = Vec::new();
        for id in ids {
            if !loaded.contains_key(id) {
                match cache.and_then(|cache| cache.get(id)) {
                    Some(lookup) => {
                        loaded.insert(*id, lookup);
                    }
                    None => again.push(*id),
                }
            }
        }
        if !again.is_empty() {
            loaded.extend(self.query(store, &again).await?);
        }
        Ok(loaded)
    }

    /// Reads `ids` again in a task of their own, skipping those already being read.
    fn refresh_in_background(&self, store: Store, ids: &[Uuid]) {
        let (claim, _others) = self.inner.loading.claim(ids);
        if claim.ids().is_empty() {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            if let Err(err) = cache.query(&store, claim.ids()).await {
                tracing::warn!(error = %err, "counts cache: re-reading posts failed; next read retries");
            }
        });
    }

    /// One query for `ids`; keeps what it read (unless a newer count event got there
    /// first) and returns a lookup for every id.
    async fn query(&self, store: &Store, ids: &[Uuid]) -> Result<ById<Arc<Lookup>>, StoreError> {
        self.inner.queries.inc();
        let mut rows: ById<VersionedPost> = store
            .get_versioned_posts(ids)
            .await?
            .into_iter()
            .map(|post| (post.row.post_id, post))
            .collect();
        let read_at = Instant::now();
        Ok(ids
            .iter()
            .map(|id| {
                let post = rows.remove(id).map(CachedPost::new);
                (*id, self.keep(*id, Lookup { post, read_at }))
            })
            .collect())
    }

    /// Caches what a query read. A count event newer than the read keeps its counts (it
    /// arrived while the query ran); a deletion always wins (a deleted post never returns).
    fn keep(&self, id: Uuid, read: Lookup) -> Arc<Lookup> {
        let Some(cache) = &self.inner.posts else {
            return Arc::new(read);
        };
        let read = Arc::new(read);
        let entry = cache.entry(&id, None, |_, current| {
            let newer = match (&current.post, &read.post) {
                (Some(newer), Some(post)) if newer.counts_at > post.counts_at => {
                    Some(newer.clone())
                }
                _ => None,
            };
            *current = match newer {
                Some(newer) => Arc::new(Lookup {
                    post: Some(newer),
                    read_at: read.read_at,
                }),
                None => read.clone(),
            };
            EntryAction::Retain(current.clone())
        });
        match entry {
            EntryResult::Retained(kept) => kept,
            EntryResult::Vacant(slot) => {
                let _ = slot.insert(read.clone());
                read
            }
            // Neither is asked for (no removal, no timeout); the read stands.
            _ => read,
        }
    }
}
