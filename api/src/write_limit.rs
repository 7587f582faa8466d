//! Per-user write rate limiting: each user may write `TALLY_WRITE_RATE_PER_SEC` times a
//! second on average after a burst of `TALLY_WRITE_BURST`; beyond that a write is refused
//! with 429 and the seconds to wait. Reads are never limited here.
//!
//! The limit is per api instance (a GCRA bucket per user in memory): N instances behind a
//! load balancer allow up to N times the rate, which bounds abuse without a shared store on
//! the write path.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A write refused by the limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    /// Whole seconds until the next write of this user would be allowed (at least 1).
    pub retry_after_secs: u32,
}

/// The users' write buckets; cheap to clone (shared).
#[derive(Clone)]
pub struct WriteLimiter {
    /// None: the limit is off.
    buckets: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl std::fmt::Debug for WriteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLimiter")
            .field("enabled", &self.buckets.is_some())
            .finish_non_exhaustive()
    }
}

/// How often buckets of users who stopped writing are dropped.
pub const FORGET_INTERVAL: Duration = Duration::from_secs(60);

impl WriteLimiter {
    /// `per_sec` writes a second after a burst of `burst`; `per_sec` 0 turns the limit off.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let buckets = NonZeroU32::new(per_sec).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self { buckets }
    }

    /// Takes one write from `user`'s bucket, or says how long to wait.
    pub fn check(&self, user: &str) -> Result<(), RateLimited> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets.check_key(&user.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            RateLimited {
                retry_after_secs: u32::try_from(wait.as_secs_f64().ceil() as u64)
                    .unwrap_or(u32::MAX)
                    .max(1),
            }
        })
    }

    /// Drops the buckets of users whose writes no longer count against them, so memory
    /// follows the users active in the last seconds, not every user ever seen.
    pub fn forget_idle(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_write_waits_a_second() {
        let limiter = WriteLimiter::new(1, 3);
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
        }
        let refused = limiter.check("alice").err().map(|r| r.retry_after_secs);
        assert_eq!(refused, Some(1));
        assert!(limiter.check("bob").is_ok(), "buckets are per user");
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let limiter = WriteLimiter::new(0, 1);
        for _ in 0..1_000 {
            assert!(limiter.check("alice").is_ok());
        }
    }
}
