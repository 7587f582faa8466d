//! Which posts a signed-in reader likes, remembered per user so a warm feed read with a
//! token asks Postgres nothing. What this instance writes is recorded as it commits (a
//! reader sees their own like at once, as when `liked_by_me` was read from the likes on
//! every read); a like or unlike written through another instance drops the answer when its
//! event arrives (`tally.like.*.*`), so the next read asks again. Answers are kept at most
//! [`MAX_AGE`], and all are dropped when the NATS connection comes back, which bounds what a
//! lost event can leave stale.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// Users remembered at most.
const USERS: u64 = 10_000;

/// Posts remembered per user at most; past this the user's answers start over.
const POSTS_PER_USER: usize = 2_000;

/// How long a user's answers are kept.
pub const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Known {
    liked: HashMap<Uuid, bool>,
    /// Moves on every change; a read keeps what it queried only if none came meanwhile
    /// (its answer may predate that change).
    generation: u64,
}

/// Cheap to clone: the clones share one cache.
#[derive(Debug, Clone)]
pub struct LikedCache {
    /// `None`: off; every signed-in read asks Postgres.
    users: Option<Cache<String, Arc<Mutex<Known>>>>,
}

impl LikedCache {
    pub fn new(enabled: bool) -> Self {
        Self {
            users: enabled.then(|| {
                Cache::builder()
                    .max_capacity(USERS)
                    .time_to_live(MAX_AGE)
                    .build()
            }),
        }
    }

    /// Which of `ids` `user` likes: from what is known, with one query for the rest.
    pub async fn liked(
        &self,
        store: &Store,
        user: &str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        let Some(users) = &self.users else {
            return store.liked_by(user, ids).await;
        };
        let known = users.get_with_by_ref(user, Default::default);
        let mut liked = HashSet::new();
        let mut unknown = Vec::new();
        let generation = {
            let known = lock(&known);
            for id in ids {
                match known.liked.get(id) {
                    Some(true) => {
                        liked.insert(*id);
                    }
                    Some(false) => {}
                    None => unknown.push(*id),
                }
            }
            known.generation
        };
        if unknown.is_empty() {
            return Ok(liked);
        }
        let fetched = store.liked_by(user, &unknown).await?;
        let mut known = lock(&known);
        if known.generation == generation {
            if known.liked.len() + unknown.len() > POSTS_PER_USER {
                known.liked.clear();
            }
            for id in unknown {
                known.liked.insert(id, fetched.contains(&id));
            }
        }
        liked.extend(fetched);
        Ok(liked)
    }

    /// Before `user` writes a like of `post_id`: its answer is unknown until the write says.
    pub fn writing(&self, user: &str, post_id: Uuid) {
        self.change(user, post_id, None);
    }

    /// After `user`'s write committed: they like `post_id` or not.
    pub fn wrote(&self, user: &str, post_id: Uuid, liked: bool) {
        self.change(user, post_id, Some(liked));
    }

    /// A like or unlike by `user` arrived on the stream (maybe written elsewhere).
    pub fn event(&self, user: &str, post_id: Uuid) {
        self.change(user, post_id, None);
    }

    /// Forgets every answer (after the NATS connection was lost, events may have been).
    pub fn forget_all(&self) {
        if let Some(users) = &self.users {
            users.invalidate_all();
        }
    }

    fn change(&self, user: &str, post_id: Uuid, liked: Option<bool>) {
        let Some(known) = self.users.as_ref().and_then(|users| users.get(user)) else {
            return;
        };
        let mut known = lock(&known);
        known.generation += 1;
        match liked {
            Some(liked) => known.liked.insert(post_id, liked),
            None => known.liked.remove(&post_id),
        };
    }
}

fn lock(known: &Mutex<Known>) -> std::sync::MutexGuard<'_, Known> {
    known.lock().unwrap_or_else(PoisonError::into_inner)
}
