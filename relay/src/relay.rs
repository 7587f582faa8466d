//! The relay's lifecycle: startup checks ([`Relay::build`]) and the supervising loop that
//! runs streaming sessions, backing off and reconnecting after failures, until shutdown.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::config::Config;
use crate::error::RelayError;
use crate::publisher::Publisher;
use crate::{replication, slot};

/// First pause after a failed session.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest pause; also how long a standby takes, at most, to notice the slot is free.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lasted this long was healthy: the next failure starts backing off anew.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// A relay that passed its startup checks, ready to stream.
#[derive(Debug)]
pub struct Relay {
    config: Config,
    publisher: Publisher,
}

impl Relay {
    /// Validates the configuration, checks `wal_level`, ensures the publication and the
    /// slot, connects to NATS and ensures the stream.
    #[instrument(skip_all, fields(slot = %config.slot))]
    pub async fn build(config: Config) -> Result<Relay, RelayError> {
        config.validate()?;
        slot::prepare(&config).await?;
        let publisher = Publisher::connect(&config.nats_url, config.max_in_flight).await?;
        publisher.ensure_stream(&config.stream).await?;
        Ok(Relay { config, publisher })
    }

    /// Streams the slot to JetStream until `shutdown` resolves, reconnecting with backoff
    /// after any failure (Postgres or NATS down, the slot held by another relay). On
    /// shutdown it confirms everything JetStream acknowledged before it returns.
    #[instrument(skip_all, fields(slot = %self.config.slot))]
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RelayError> {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });

        let mut backoff = Backoff::default();
        // Standing by is logged when it starts, not on every retry.
        let mut standing_by = false;
        while !stop.is_cancelled() {
            let started = Instant::now();
            match replication::run(&self.config, &self.publisher, &stop).await {
                Ok(()) => {}
                Err(err) if err.is_slot_in_use() => {
                    if !standing_by {
                        tracing::info!(error = %err.chain(), "the slot is streamed by another process; standing by");
                    }
                    standing_by = true;
                }
                Err(err) => {
                    standing_by = false;
                    tracing::error!(error = %err.chain(), "streaming failed; reconnecting");
                }
            }
            if started.elapsed() >= HEALTHY_SESSION {
                backoff = Backoff::default();
            }
            if stop.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stop.cancelled() => break,
            }
        }
        watcher.abort();
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// Exponential backoff between sessions, doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
