//! How long an event that would make a count negative is held back before it is
//! dead-lettered.
//!
//! Such an event (an unlike, a comment removal) has usually overtaken the event it undoes:
//! JetStream delivers in stream order, so the like was delivered first, but to an updater
//! that did not ack it, and it comes back only when the consumer's ack wait ends. An updater
//! killed holding the like makes that a whole ack wait (30 s by default) after the unlike's
//! first delivery. So the unlike is held, with redeliveries spaced out, for at least twice the
//! ack wait before it counts as a bug and is dead-lettered: never before the like can have
//! come back.

use std::time::Duration;

/// The first pause before an event held back is redelivered; each further one doubles, up to
/// the ack wait.
const FIRST_DELAY: Duration = Duration::from_secs(1);

/// When to redeliver, and when to give up on, an event held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldBack {
    ack_wait: Duration,
    /// Redeliveries before dead-lettering: the configured number, or more when that would not
    /// outlast twice the ack wait.
    pub retries: u32,
}

impl HoldBack {
    /// The policy for a consumer whose ack wait is `ack_wait`, with at least `retries`
    /// redeliveries (`TALLY_UPDATER_NEGATIVE_RETRIES`).
    pub fn new(retries: u32, ack_wait: Duration) -> Self {
        let mut policy = Self {
            ack_wait: ack_wait.max(FIRST_DELAY),
            retries,
        };
        while policy.held_for(policy.retries) < 2 * policy.ack_wait {
            policy.retries += 1;
        }
        policy
    }

    /// The pause before the next delivery of an event delivered `deliveries` times so far.
    pub fn delay(&self, deliveries: u64) -> Duration {
        let doublings = u32::try_from(deliveries.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        FIRST_DELAY
            .saturating_mul(1 << doublings)
            .min(self.ack_wait)
    }

    /// Whether an event delivered `deliveries` times has been held long enough.
    pub fn exhausted(&self, deliveries: u64) -> bool {
        deliveries > u64::from(self.retries)
    }

    /// How long an event is held over its first `retries` redeliveries.
    fn held_for(&self, retries: u32) -> Duration {
        (1..=u64::from(retries)).map(|d| self.delay(d)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_outlasts_twice_the_ack_wait_whatever_the_configured_retries() {
        let policy = HoldBack::new(5, Duration::from_secs(30));
        // 1 + 2 + 4 + 8 + 16 + 30 = 61 s >= 60 s.
        assert_eq!(policy.retries, 6);
        assert!(policy.held_for(policy.retries) >= Duration::from_secs(60));
        assert_eq!(
            policy.delay(6),
            Duration::from_secs(30),
            "capped at the ack wait"
        );
        assert!(!policy.exhausted(6));
        assert!(policy.exhausted(7));
    }

    #[test]
    fn more_configured_retries_are_kept() {
        assert_eq!(HoldBack::new(10, Duration::from_secs(1)).retries, 10);
        assert_eq!(HoldBack::new(0, Duration::from_secs(1)).retries, 2);
    }
}
