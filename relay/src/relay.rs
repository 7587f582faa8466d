//! The relay's lifecycle: startup checks ([`Relay::build`]) and the supervising loop that
//! runs streaming sessions, backing off and reconnecting after failures, until shutdown.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::config::Config;
use crate::error::RelayError;
use crate::metrics::{Metrics, MetricsServer};
use crate::publisher::Publisher;
use crate::{prune, replication, slot};

/// First pause after a failed session.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest pause after failures.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a standby asks for the slot: how long, at most, it takes to notice the slot is
/// free once Postgres ended the previous holder's session. An attempt is one short
/// connection, so polling this often costs Postgres little.
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// A session that lasted this long was healthy: the next failure starts backing off anew.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// A relay that passed its startup checks, ready to stream.
#[derive(Debug)]
pub struct Relay {
    config: Config,
    publisher: Publisher,
    metrics: Metrics,
    metrics_server: MetricsServer,
}

impl Relay {
    /// Validates the configuration, binds the metrics listener, checks `wal_level` and the
    /// role, ensures the publication and the slot, connects to NATS and ensures the stream.
    /// While Postgres or NATS cannot be reached it retries with backoff (a relay may start
    /// before them); misconfiguration fails at once with a message naming the fix.
    #[instrument(skip_all, fields(slot = %config.slot))]
    pub async fn build(config: Config) -> Result<Relay, RelayError> {
        config.validate()?;
        let metrics_server = MetricsServer::bind(config.metrics_addr)
            .await
            .map_err(|source| RelayError::MetricsBind {
                addr: config.metrics_addr,
                source,
            })?;
        let mut backoff = Backoff::default();
        let publisher = loop {
            match Self::prepare(&config).await {
                Ok(publisher) => break publisher,
                Err(err) if err.is_transient() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err.chain(), retry_in = ?delay, "Postgres or NATS is not reachable; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        };
        Ok(Relay {
            metrics: Metrics::new(&config.instance),
            config,
            publisher,
            metrics_server,
        })
    }

    async fn prepare(config: &Config) -> Result<Publisher, RelayError> {
        // NATS first: a slot created here is followed at once by the backfill, which needs
        // JetStream.
        let publisher = Publisher::connect(
            &config.nats_url,
            &config.client_name(),
            config.max_in_flight,
        )
        .await?;
        publisher.ensure_stream(&config.stream).await?;
        if slot::prepare(config).await? {
            slot::backfill(config, &publisher).await?;
        }
        Ok(publisher)
    }

    /// Where `/metrics` is served (the bound port when the configuration asked for 0).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_server.local_addr()
    }

    /// Streams the slot to JetStream until `shutdown` resolves, reconnecting with backoff
    /// after any failure (Postgres or NATS down, the slot held by another relay). On
    /// shutdown it confirms everything JetStream acknowledged before it returns.
    #[instrument(skip_all, fields(slot = %self.config.slot, metrics = %self.metrics_addr()))]
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

        let Relay {
            config,
            publisher,
            metrics,
            metrics_server,
        } = self;
        let served =
            tokio::spawn(metrics_server.serve(metrics.clone(), stop.clone().cancelled_owned()));
        let pruning = tokio::spawn(prune::run(config.clone(), metrics.clone(), stop.clone()));

        let mut backoff = Backoff::default();
        // Standing by is logged when it starts, not on every retry.
        let mut standing_by = false;
        while !stop.is_cancelled() {
            let started = Instant::now();
            match replication::run(&config, &publisher, &metrics, &stop).await {
                Ok(()) => standing_by = false,
                Err(err) if err.is_slot_in_use() => {
                    if !standing_by {
                        tracing::info!(
                            slot = %config.slot,
                            "the slot is in use by another process (another relay?); standing by \
                             to take over when it stops. If that process is not a tally relay, \
                             stop it (see active_pid in relay_slots) or set another TALLY_RELAY_SLOT"
                        );
                    }
                    standing_by = true;
                }
                Err(err) if err.is_privilege() => {
                    standing_by = false;
                    metrics.sessions_failed.inc();
                    tracing::error!(
                        error = %err.chain(),
                        "Postgres refused replication to the relay's role: grant it with ALTER ROLE ... REPLICATION; retrying"
                    );
                }
                Err(err) => {
                    standing_by = false;
                    metrics.sessions_failed.inc();
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
                _ = tokio::time::sleep(if standing_by { STANDBY_POLL } else { backoff.next_delay() }) => {}
                _ = stop.cancelled() => break,
            }
        }
        watcher.abort();
        // Both watch `stop`, which is cancelled once the loop left.
        stop.cancel();
        let _ = pruning.await;
        match served.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "the metrics listener failed"),
            Err(err) => tracing::warn!(error = %err, "the metrics listener panicked"),
            Ok(Ok(())) => {}
        }
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
