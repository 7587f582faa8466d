//! Which post ids a query is reading right now, so concurrent feed reads that miss the same
//! post wait for that one query instead of each sending their own (a cold celebrity post
//! read by thousands at once costs Postgres one row lookup).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use uuid::Uuid;

/// The ids being read, each with a receiver that closes when its read ends.
#[derive(Debug, Default, Clone)]
pub struct Loading {
    ids: Arc<Mutex<HashMap<Uuid, watch::Receiver<()>>>>,
}

impl Loading {
    /// Claims the ids of `ids` no one is reading yet (the caller reads those, then drops
    /// the claim) and returns the reads already under way for the others.
    pub fn claim(&self, ids: &[Uuid]) -> (Claim, Vec<Underway>) {
        let (done, _) = watch::channel(());
        let mut mine = Vec::new();
        let mut others = Vec::new();
        let mut loading = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            match loading.get(id) {
                Some(underway) => others.push(Underway(underway.clone())),
                None => {
                    loading.insert(*id, done.subscribe());
                    mine.push(*id);
                }
            }
        }
        drop(loading);
        let claim = Claim {
            loading: self.clone(),
            ids: mine,
            _done: done,
        };
        (claim, others)
    }
}

/// Ids this caller reads. Dropping it (after the read kept its result, or when the read
/// failed or was cancelled) releases them and wakes whoever waits for them.
#[derive(Debug)]
pub struct Claim {
    loading: Loading,
    ids: Vec<Uuid>,
    /// Closed when the claim drops, after `drop` released the ids.
    _done: watch::Sender<()>,
}

impl Claim {
    pub fn ids(&self) -> &[Uuid] {
        &self.ids
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut loading = self
            .loading
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for id in &self.ids {
            loading.remove(id);
        }
    }
}

/// Another caller's read.
#[derive(Debug)]
pub struct Underway(watch::Receiver<()>);

impl Underway {
    /// Waits until that read ended, however it ended.
    pub async fn finished(mut self) {
        // Only the sender's drop ends it: nothing is ever sent.
        while self.0.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_and_then_may_claim_again() {
        let loading = Loading::default();
        let [a, b] = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let (first, none) = loading.claim(&[a]);
        assert_eq!(first.ids(), [a]);
        assert!(none.is_empty());

        let (second, others) = loading.claim(&[a, b]);
        assert_eq!(second.ids(), [b]);
        assert_eq!(others.len(), 1);
        let waiting = tokio::spawn(async move {
            for other in others {
                other.finished().await;
            }
        });
        drop(first);
        waiting
            .await
            .expect("the waiter ends once the first claim drops");

        let (third, others) = loading.claim(&[a]);
        assert_eq!(third.ids(), [a]);
        assert!(others.is_empty());
    }
}
