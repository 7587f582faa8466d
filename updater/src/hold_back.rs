//! When an event that would make a count negative is redelivered, and when it is
//! dead-lettered.
//!
//! Such an event (an unlike, a comment removal) has usually overtaken the event it undoes.
//! JetStream delivers in stream order, so the like was delivered first, but to an updater that
//! did not ack it (another instance mid-batch, or one killed holding it), and it comes back only
//! when the consumer's ack wait ends. The relay can also store the unlike first: a publish lost
//! to a nats-server restart is sent again after later ones were stored.
//!
//! So the unlike is redelivered, with pauses doubling up to the ack wait, and dead-lettered
//! only when both of these hold:
//! - it has been held for twice the ack wait, timed in the database from its first hold (a
//!   delivery count is no clock: failed batches and killed updaters use up deliveries too);
//! - every message before it in the stream is acked (the consumer's ack floor has reached it),
//!   so nothing it can have overtaken is still held by any updater, alive or dead.

use std::time::Duration;

/// The first pause before an event held back is redelivered; each further one doubles, up to
/// the ack wait.
const FIRST_DELAY: Duration = Duration::from_secs(1);

/// When to redeliver, and when to give up on, an event held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldBack {
    ack_wait: Duration,
    /// Deliveries an event needs, at least, before it is dead-lettered
    /// (`TALLY_UPDATER_NEGATIVE_RETRIES`).
    min_deliveries: u32,
}

impl HoldBack {
    /// The policy for a consumer whose ack wait is `ack_wait`, with at least `retries`
    /// redeliveries (`TALLY_UPDATER_NEGATIVE_RETRIES`) before a dead letter.
    pub fn new(retries: u32, ack_wait: Duration) -> Self {
        Self {
            ack_wait: ack_wait.max(FIRST_DELAY),
            min_deliveries: retries,
        }
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

    /// Whether an event delivered `deliveries` times, first held back `held_for` ago, has
    /// waited long enough. It is dead-lettered only if, besides, the ack floor has reached it.
    pub fn waited_out(&self, deliveries: u64, held_for: Duration) -> bool {
        deliveries > u64::from(self.min_deliveries) && held_for >= 2 * self.ack_wait
    }

    /// Whether every message before stream sequence `sequence` is acked, by the consumer's ack
    /// floor `floor` (None when it could not be read: then nothing is known to be acked).
    pub fn floor_reached(floor: Option<u64>, sequence: u64) -> bool {
        floor.is_some_and(|floor| floor.saturating_add(1) >= sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_lasts_twice_the_ack_wait_however_many_deliveries_it_took() {
        let policy = HoldBack::new(5, Duration::from_secs(30));
        // Failed batches redeliver every second: many deliveries are no reason to give up.
        assert!(!policy.waited_out(50, Duration::from_secs(59)));
        assert!(policy.waited_out(50, Duration::from_secs(60)));
        // Nor is a long time with fewer deliveries than configured.
        assert!(!policy.waited_out(5, Duration::from_secs(600)));
        assert!(policy.waited_out(6, Duration::from_secs(600)));
    }

    #[test]
    fn redeliveries_double_from_a_second_up_to_the_ack_wait() {
        let policy = HoldBack::new(0, Duration::from_secs(30));
        let delays: Vec<u64> = (1..=7).map(|d| policy.delay(d).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(policy.delay(u64::MAX), Duration::from_secs(30));
    }

    #[test]
    fn the_floor_is_reached_when_every_earlier_message_is_acked() {
        assert!(HoldBack::floor_reached(Some(41), 42));
        assert!(HoldBack::floor_reached(Some(50), 42));
        assert!(!HoldBack::floor_reached(Some(40), 42));
        assert!(!HoldBack::floor_reached(None, 42));
        assert!(HoldBack::floor_reached(Some(u64::MAX), 1));
    }
}
