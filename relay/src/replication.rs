//! One streaming session: read the slot through pgwire-replication, publish each outbox
//! insert as it is decoded, and confirm positions to Postgres as the ack window reaches
//! them. A session ends on shutdown (after confirming everything acknowledged) or on the
//! first error; the caller reconnects, and the slot resumes from its confirmed position.

use std::time::{Duration, Instant, SystemTime};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::config::Config;
use crate::error::RelayError;
use crate::metrics::{Metrics, lap};
use crate::outbox::{OutboxEvent, TABLE};
use crate::pgoutput::{Decoder, Message};
use crate::publisher::{AckWindow, InFlight, Publisher};

/// How soon a newly confirmed position is reported to Postgres.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stop requested mid-transaction waits to relay the rest of that transaction.
const FINISH_TXN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing session waits for its last confirmation to reach Postgres.
const FINAL_CONFIRM_TIMEOUT: Duration = STATUS_INTERVAL.saturating_mul(5);

/// Streams until `stop` is cancelled (`Ok`) or something fails (`Err`).
#[instrument(skip_all, fields(slot = %config.slot))]
pub async fn run(
    config: &Config,
    publisher: &Publisher,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), RelayError> {
    // Reading from the slot is pointless while JetStream cannot take events: this both
    // checks NATS and recreates the stream if it was deleted.
    tokio::select! {
        biased;
        _ = stop.cancelled() => return Ok(()),
        ensured = publisher.ensure_stream(&config.stream) => ensured?,
    }

    let replication = config
        .replication()?
        .with_status_interval(STATUS_INTERVAL)
        // Start at the slot's confirmed position.
        .with_start_lsn(Lsn::ZERO);
    // While Postgres is unreachable connecting can take long; shutdown must not wait.
    let mut client = tokio::select! {
        biased;
        _ = stop.cancelled() => return Ok(()),
        client = ReplicationClient::connect(replication) => client.map_err(RelayError::Replication)?,
    };
    tokio::select! {
        biased;
        _ = stop.cancelled() => return Ok(()),
        started = client.wait_started() => started.map_err(RelayError::Replication)?,
    }
    tracing::info!("streaming from the replication slot");
    metrics.streaming.set(1);

    let window = AckWindow::spawn(config.max_in_flight, metrics.clone());
    // A stop finishes the transaction being relayed, so the final confirmation covers every
    // event already published; `abort` bounds that wait.
    let abort = CancellationToken::new();
    let deadline = tokio::spawn({
        let (stop, abort) = (stop.clone(), abort.clone());
        async move {
            stop.cancelled().await;
            tokio::time::sleep(FINISH_TXN_TIMEOUT).await;
            abort.cancel();
        }
    });
    let mut session = Session {
        client: &mut client,
        publisher,
        window: &window,
        confirmed: window.confirmed(),
        stop,
        abort: &abort,
        metrics,
        reported: Lsn::ZERO,
    };
    let streamed = session.stream().await;
    deadline.abort();

    // Whatever ended the stream, what JetStream acknowledged is confirmed before the
    // connection closes; otherwise a restart would replay it.
    let (acked, drained) = window.drain().await;
    let result = match (streamed, drained) {
        (Err(RelayError::AckWindowClosed), Err(ack_failure)) => Err(ack_failure),
        (Err(err), _) => Err(err),
        (Ok(()), Err(ack_failure)) => Err(ack_failure),
        (Ok(()), Ok(())) => Ok(()),
    };
    finish(client, acked, metrics).await;
    metrics.streaming.set(0);
    // Acks still pending when the window failed were dropped with it.
    metrics.in_flight.set(0);
    result
}

struct Session<'a> {
    client: &'a mut ReplicationClient,
    publisher: &'a Publisher,
    window: &'a AckWindow,
    confirmed: watch::Receiver<Lsn>,
    stop: &'a CancellationToken,
    abort: &'a CancellationToken,
    metrics: &'a Metrics,
    reported: Lsn,
}

/// Whether an item went into the window or shutdown came first.
enum Pushed {
    Yes,
    Stopped,
}

impl Session<'_> {
    async fn stream(&mut self) -> Result<(), RelayError> {
        let mut decoder = Decoder::new();
        // The final LSN of the transaction being received, between Begin and Commit.
        let mut open_txn: Option<Lsn> = None;
        let stages = &self.metrics.stages;
        loop {
            // Checked before the select, which then tries the next message first: on a
            // backlog the message is buffered already and the other branches are never
            // polled, so no waker is registered (and dropped) for them per message.
            let waiting = Instant::now();
            if self
                .confirmed
                .has_changed()
                .map_err(|_| RelayError::AckWindowClosed)?
            {
                self.report_confirmed();
                lap(&stages.confirm, waiting);
            }
            if self.abort.is_cancelled() {
                tracing::warn!(
                    "stopped in the middle of a transaction; a restart replays its published events"
                );
                return Ok(());
            }
            if open_txn.is_none() && self.stop.is_cancelled() {
                return Ok(());
            }
            let waiting = Instant::now();
            let event = tokio::select! {
                biased;
                event = self.client.recv() => event.map_err(RelayError::Replication)?,
                // Back to the top, which logs it.
                _ = self.abort.cancelled() => continue,
                _ = self.stop.cancelled(), if open_txn.is_none() => return Ok(()),
                changed = self.confirmed.changed() => {
                    changed.map_err(|_| RelayError::AckWindowClosed)?;
                    self.report_confirmed();
                    lap(&stages.confirm, waiting);
                    continue;
                }
            };
            let mut now = lap(&stages.read, waiting);
            let Some(event) = event else {
                return Err(RelayError::ReplicationEnded);
            };
            let item = match event {
                ReplicationEvent::Begin { final_lsn, .. } => {
                    open_txn = Some(final_lsn);
                    continue;
                }
                ReplicationEvent::XLogData { data, .. } => {
                    let decoded = decoder.decode(&data).map_err(RelayError::Decode)?;
                    now = lap(&stages.decode, now);
                    let Message::Insert(row) = decoded else {
                        continue;
                    };
                    if row.relation.name != TABLE {
                        tracing::debug!(table = %row.relation.name, "insert into another table; skipped");
                        continue;
                    }
                    let event =
                        OutboxEvent::from_row(&row).map_err(|source| RelayError::Outbox {
                            commit_lsn: open_txn.unwrap_or_default().to_string(),
                            source,
                        })?;
                    let event_id = event.event_id.clone();
                    now = lap(&stages.build, now);
                    let published_at = now;
                    // While NATS is away the publish itself can wait (for the client's
                    // buffer or an ack permit); shutdown must not. The publish is polled
                    // first: it is usually ready at once, and the token then never is.
                    if self.abort.is_cancelled() {
                        return Ok(());
                    }
                    let ack = tokio::select! {
                        biased;
                        ack = self.publisher.publish(event) => ack?,
                        _ = self.abort.cancelled() => return Ok(()),
                    };
                    now = lap(&stages.publish, now);
                    self.metrics.in_flight.inc();
                    InFlight::Event {
                        event_id,
                        ack,
                        published_at,
                    }
                }
                ReplicationEvent::Commit {
                    end_lsn,
                    commit_time_micros,
                    ..
                } => {
                    open_txn = None;
                    InFlight::Confirm {
                        lsn: end_lsn,
                        committed_at: Some(pg_time(commit_time_micros)),
                    }
                }
                // Postgres sends keepalives, not transactions, while only unpublished tables
                // change. Confirming their position (once all before it is acked) lets the
                // slot advance so WAL does not pile up on an idle outbox. Not inside a
                // transaction: its commit is still to come.
                ReplicationEvent::KeepAlive { wal_end, .. } if open_txn.is_none() => {
                    InFlight::Confirm {
                        lsn: wal_end,
                        committed_at: None,
                    }
                }
                ReplicationEvent::KeepAlive { .. }
                | ReplicationEvent::Message { .. }
                | ReplicationEvent::StoppedAt { .. } => continue,
            };
            let pushed = self.push(item).await?;
            lap(&stages.window, now);
            if let Pushed::Stopped = pushed {
                return Ok(());
            }
            // With a stop pending, the top of the loop returns as soon as no transaction
            // is open: after this commit's confirmation went into the window.
        }
    }

    /// Puts `item` in the window, waiting while it is full (backpressure: nothing more is
    /// read from the slot meanwhile) but still passing confirmations on. The push is polled
    /// first: with room in the window it completes at once and the other branches' wakers
    /// are never registered.
    async fn push(&mut self, item: InFlight) -> Result<Pushed, RelayError> {
        if self.abort.is_cancelled() {
            return Ok(Pushed::Stopped);
        }
        let send = self.window.push(item);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                sent = &mut send => return sent.map(|()| Pushed::Yes),
                _ = self.abort.cancelled() => return Ok(Pushed::Stopped),
                changed = self.confirmed.changed() => {
                    changed.map_err(|_| RelayError::AckWindowClosed)?;
                    // Inlined rather than `report_confirmed`: `send` borrows the window.
                    let lsn = *self.confirmed.borrow_and_update();
                    if lsn > self.reported {
                        self.client.update_applied_lsn(lsn);
                        self.reported = lsn;
                        self.metrics.confirmed_lsn.set(lsn.as_u64() as i64);
                    }
                    self.record_lag();
                }
            }
        }
    }

    fn report_confirmed(&mut self) {
        let lsn = *self.confirmed.borrow_and_update();
        if lsn > self.reported {
            tracing::trace!(%lsn, "confirming");
            self.client.update_applied_lsn(lsn);
            self.reported = lsn;
            self.metrics.confirmed_lsn.set(lsn.as_u64() as i64);
        }
        self.record_lag();
    }

    /// WAL the server has written past the last confirmed position.
    fn record_lag(&self) {
        let wal_end = self.client.metrics().last_wal_end().as_u64();
        let lag = wal_end.saturating_sub(self.reported.as_u64());
        self.metrics.lag_bytes.set(lag as i64);
    }
}

/// A Postgres timestamp (microseconds since 2000-01-01 UTC) as a system time.
fn pg_time(micros: i64) -> SystemTime {
    const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECS);
    if micros >= 0 {
        epoch + Duration::from_micros(micros as u64)
    } else {
        epoch - Duration::from_micros(micros.unsigned_abs())
    }
}

/// Reports `acked` to Postgres, waits until the status update carrying it was written (the
/// client's `stop` sends none of its own), then closes the replication connection.
async fn finish(mut client: ReplicationClient, acked: Lsn, metrics: &Metrics) {
    if acked > Lsn::ZERO {
        client.update_applied_lsn(acked);
        metrics.confirmed_lsn.set(acked.as_u64() as i64);
        let metrics = client.metrics();
        let reported = async {
            while metrics.last_applied_lsn() < acked && client.is_running() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(FINAL_CONFIRM_TIMEOUT, reported)
            .await
            .is_err()
        {
            tracing::warn!(lsn = %acked, "the final confirmation did not reach Postgres; a restart will replay from the previous one");
        } else if client.is_running() {
            tracing::info!(lsn = %acked, "confirmed the last acknowledged position");
        }
    }
    match tokio::time::timeout(FINAL_CONFIRM_TIMEOUT, client.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "replication connection closed with an error")
        }
        Err(_) => tracing::warn!("the replication connection did not close in time"),
    }
}
