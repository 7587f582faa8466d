//! The fan-out hub: one latest-value channel per watched post, fed by the api's one NATS
//! subscription and by re-reads from Postgres, read by every stream that watches the post.
//! A `watch` channel keeps only the newest counts, so a hot post costs each viewer one value
//! however fast it changes, and a stream that falls behind skips ahead instead of queueing.
//! It also counts the open streams against `TALLY_LIVE_MAX_CONNECTIONS`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::live::events::LiveCounts;
use crate::metrics::Metrics;

/// A post's newest counts, numbered: the hub's how-manieth change of them this is, so a
/// stream can tell how many changes it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub counts: LiveCounts,
}

/// The newest counts of one post (None until the first are known).
pub type Latest = watch::Receiver<Option<Versioned>>;

type Posts = HashMap<Uuid, watch::Sender<Option<Versioned>>>;

/// Shared by every stream, the NATS subscriber and the re-reader; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    posts: Mutex<Posts>,
    open: AtomicUsize,
    max_open: usize,
    closing: CancellationToken,
    metrics: Metrics,
}

impl Hub {
    pub fn new(max_open: usize, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                posts: Mutex::new(HashMap::new()),
                open: AtomicUsize::new(0),
                max_open,
                closing: CancellationToken::new(),
                metrics,
            }),
        }
    }

    /// The map, even if a holder panicked: it only holds channels, which stay consistent.
    fn posts(&self) -> std::sync::MutexGuard<'_, Posts> {
        self.inner
            .posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `post_id`: a receiver of its newest counts.
    pub fn watch(&self, post_id: Uuid) -> Latest {
        self.posts()
            .entry(post_id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Takes `counts` if some stream watches the post and they are newer than what it has;
    /// whether they were.
    pub fn offer(&self, counts: LiveCounts) -> bool {
        let posts = self.posts();
        let Some(sender) = posts.get(&counts.post_id) else {
            return false;
        };
        sender.send_if_modified(|current| match current {
            Some(current) if !counts.supersedes(&current.counts) => false,
            _ => {
                let version = current.as_ref().map_or(1, |current| current.version + 1);
                *current = Some(Versioned { version, counts });
                true
            }
        })
    }

    /// The posts some stream watches now.
    pub fn watched(&self) -> Vec<Uuid> {
        self.posts().keys().copied().collect()
    }

    /// Drops the channels no stream reads any more.
    pub fn forget_unwatched(&self) {
        self.posts().retain(|_, sender| sender.receiver_count() > 0);
    }

    /// A slot for one more open stream, or None when TALLY_LIVE_MAX_CONNECTIONS are open.
    pub fn try_open(&self) -> Option<StreamSlot> {
        let before = self.inner.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.inner.max_open {
            self.inner.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.inner.metrics.live_streams.inc();
        Some(StreamSlot { hub: self.clone() })
    }

    /// Resolves when the api shuts down: every stream ends then.
    pub fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Ends every stream (the api is shutting down).
    pub fn close(&self) {
        self.inner.closing.cancel();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// One open stream's place under the cap; freed when the stream is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    hub: Hub,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.hub.inner.open.fetch_sub(1, Ordering::AcqRel);
        self.hub.inner.metrics.live_streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn counts(post_id: Uuid, likes: i64, micros: i64) -> LiveCounts {
        LiveCounts {
            post_id,
            likes,
            comments: 0,
            updated_at: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        }
    }

    #[test]
    fn every_watcher_sees_the_newest_counts_and_never_older_ones() {
        let hub = Hub::new(10, Metrics::default());
        let post = Uuid::now_v7();
        let mut first = hub.watch(post);
        let second = hub.watch(post);
        assert!(hub.offer(counts(post, 1, 10)));
        assert!(hub.offer(counts(post, 3, 30)));
        assert!(!hub.offer(counts(post, 2, 20)), "an older value was taken");
        let newest = first.borrow_and_update().clone();
        assert_eq!(
            newest.as_ref().map(|v| (v.counts.likes, v.version)),
            Some((3, 2))
        );
        assert_eq!(second.borrow().as_ref().map(|v| v.counts.likes), Some(3));
    }

    #[test]
    fn counts_of_an_unwatched_post_are_dropped_and_its_channel_forgotten() {
        let hub = Hub::new(10, Metrics::default());
        let post = Uuid::now_v7();
        assert!(!hub.offer(counts(post, 1, 10)));
        drop(hub.watch(post));
        assert_eq!(hub.watched(), vec![post]);
        hub.forget_unwatched();
        assert!(hub.watched().is_empty());
    }

    #[test]
    fn streams_beyond_the_cap_get_no_slot_until_one_closes() {
        let hub = Hub::new(2, Metrics::default());
        let first = hub.try_open();
        let second = hub.try_open();
        assert!(first.is_some() && second.is_some());
        assert!(hub.try_open().is_none());
        drop(first);
        assert!(hub.try_open().is_some());
    }
}
