//! The ids this process applied recently, so that the redeliveries that come soon (a lost
//! ack, a batch handed back or redelivered after a failure) are acked without a round trip.
//! The inbox stays the ledger of record: an id forgotten here is still caught there.
//!
//! quick_cache with foldhash rather than moka with SipHash: every event of a batch is looked
//! up once and inserted once, and on a backlog moka's bookkeeping and SipHash were a quarter
//! of the updater's own CPU (`perf` on the bench's 1M-event backlog).

use std::time::{Duration, Instant};

use quick_cache::UnitWeighter;
use quick_cache::sync::{Cache, DefaultLifecycle};
use uuid::Uuid;

type Ids = Cache<Uuid, Instant, UnitWeighter, foldhash::fast::RandomState>;

/// A bounded, aging set of applied event ids; cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct RecentIds {
    ids: std::sync::Arc<Ids>,
    ttl: Duration,
}

impl RecentIds {
    /// Remembers at most `capacity` ids (the least recently used go first), each for `ttl`.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        let ids = Cache::with(
            capacity,
            capacity as u64,
            UnitWeighter,
            foldhash::fast::RandomState::default(),
            DefaultLifecycle::default(),
        );
        Self {
            ids: std::sync::Arc::new(ids),
            ttl,
        }
    }

    /// Whether `id` was applied within the last `ttl`.
    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.ids
            .get(id)
            .is_some_and(|applied| applied.elapsed() < self.ttl)
    }

    /// Records that `id` was applied (committed) at `applied`.
    pub(crate) fn insert(&self, id: Uuid, applied: Instant) {
        self.ids.insert(id, applied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_id_is_recent_until_its_time_is_up() {
        let recent = RecentIds::new(16, Duration::from_millis(50));
        let id = Uuid::now_v7();
        assert!(!recent.contains(&id));
        recent.insert(id, Instant::now());
        assert!(recent.contains(&id));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!recent.contains(&id));
    }

    #[test]
    fn the_set_stays_within_its_capacity() {
        let recent = RecentIds::new(1_000, Duration::from_secs(60));
        let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            recent.insert(*id, Instant::now());
        }
        let kept = ids.iter().filter(|id| recent.contains(id)).count();
        assert!(kept <= 1_000, "kept {kept} ids");
        assert!(kept > 0);
    }
}
