//! The JetStream side: the NATS connection, the stream, and publishing events with their
//! acknowledgements awaited in order by a separate task ([`AckWindow`]), so publishing never
//! waits on an individual ack and a position is confirmed only once everything before it
//! was acknowledged.

use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::context::{CreateStreamErrorKind, PublishAckFuture};
use async_nats::jetstream::{self, stream::StorageType};
use pgwire_replication::Lsn;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::instrument;

use crate::config::StreamConfig;
use crate::error::RelayError;
use crate::metrics::Metrics;
use crate::outbox::OutboxEvent;

/// How long JetStream API calls and publish acknowledgements may take before the session
/// is considered broken and restarted.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// A NATS connection with its JetStream context. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    jetstream: jetstream::Context,
    url: String,
}

impl Publisher {
    /// Connects to NATS. The client reconnects by itself afterwards; publishes made while it
    /// is disconnected fail their ack, which restarts the session.
    #[instrument(skip(url, max_in_flight))]
    pub async fn connect(url: &str, name: &str, max_in_flight: usize) -> Result<Self, RelayError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            })
            .connect(url)
            .await
            .map_err(RelayError::NatsConnect)?;
        // async-nats holds back publishes beyond its ack limit; keep that limit above the
        // relay's own window so the window alone decides when reading pauses.
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(JETSTREAM_TIMEOUT)
            .max_ack_inflight(max_in_flight.saturating_add(64).max(5_000))
            .build(client);
        Ok(Self {
            jetstream,
            url: url.to_owned(),
        })
    }

    /// Gets the stream, creating it when missing. An existing stream is left as it is (an
    /// operator may have tuned it); a different duplicate window is reported.
    #[instrument(skip(self, config), fields(stream = %config.name))]
    pub async fn ensure_stream(&self, config: &StreamConfig) -> Result<(), RelayError> {
        let wanted = jetstream::stream::Config {
            name: config.name.clone(),
            subjects: config.subjects.clone(),
            storage: StorageType::File,
            duplicate_window: config.duplicate_window,
            max_age: config.max_age,
            ..Default::default()
        };
        // While NATS is unreachable the request waits for a reconnect; bound it so the
        // outage is reported and retried rather than silent.
        let stream = tokio::time::timeout(
            JETSTREAM_TIMEOUT,
            self.jetstream.get_or_create_stream(wanted),
        )
        .await
        .map_err(|_| RelayError::StreamTimeout {
            stream: config.name.clone(),
        })?
        .map_err(|source| match source.kind() {
            CreateStreamErrorKind::JetStreamUnavailable => RelayError::NoJetStream {
                url: self.url.clone(),
            },
            _ => RelayError::Stream {
                stream: config.name.clone(),
                source,
            },
        })?;
        let actual = &stream.cached_info().config;
        if actual.subjects == [tally_sql::STREAM_SUBJECTS_BEFORE_COUNT_EVENTS]
            && config.subjects != actual.subjects
        {
            self.narrow_subjects(actual.clone(), &config.subjects).await;
        }
        if actual.duplicate_window != config.duplicate_window {
            tracing::warn!(
                configured = ?config.duplicate_window,
                actual = ?actual.duplicate_window,
                "the stream's duplicate window differs from the configured one; left unchanged"
            );
        }
        Ok(())
    }

    /// Narrows a stream made before the count events (`tally.>`), which would store every
    /// count event the updater publishes and hand it back to the updaters as an event. The
    /// other settings stay as they are; a failure is reported, and the updater then publishes
    /// no count events until the stream is narrowed.
    async fn narrow_subjects(&self, mut stream: jetstream::stream::Config, subjects: &[String]) {
        let before = std::mem::replace(&mut stream.subjects, subjects.to_vec());
        match tokio::time::timeout(JETSTREAM_TIMEOUT, self.jetstream.update_stream(stream)).await {
            Ok(Ok(_)) => tracing::info!(?before, after = ?subjects,
                "narrowed the stream's subjects to the events' (the count events stay out of it)"),
            Ok(Err(err)) => tracing::warn!(error = %err, ?before,
                "could not narrow the stream's subjects; the updater publishes no count events until it is"),
            Err(_) => tracing::warn!(
                ?before,
                "timed out narrowing the stream's subjects; the updater publishes no count events until it is"
            ),
        }
    }

    /// Sends one event; the returned future resolves when JetStream stored it.
    pub async fn publish(&self, event: OutboxEvent) -> Result<PublishAckFuture, RelayError> {
        let OutboxEvent {
            event_id,
            subject,
            payload,
            headers,
        } = event;
        match self
            .jetstream
            .publish_with_headers(subject, headers, payload)
            .await
        {
            Ok(ack) => Ok(ack),
            Err(source) => Err(RelayError::Publish { event_id, source }),
        }
    }
}

/// What travels through the window, in stream order.
#[derive(Debug)]
pub enum InFlight {
    /// A published event whose ack is pending.
    Event {
        event_id: String,
        ack: PublishAckFuture,
        published_at: Instant,
    },
    /// A position that may be confirmed to Postgres once everything before it was acked,
    /// with the commit time of the transaction ending there (none for a keepalive).
    Confirm {
        lsn: Lsn,
        committed_at: Option<SystemTime>,
    },
}

/// A bounded window of pending acknowledgements, awaited in order by its own task. The
/// session publishes and pushes; the task publishes the newest confirmable position on a
/// watch channel. Awaiting acks in another task keeps a full window from deadlocking the
/// publisher.
///
/// The window's capacity counts events only: a position to confirm is not a publish, and
/// counting one per transaction would halve the publishes in flight on one-event
/// transactions (the api's), which made the relay wait on the broker's round trips.
/// Positions are still bounded, by the channel (twice the capacity).
#[derive(Debug)]
pub struct AckWindow {
    sender: mpsc::Sender<(InFlight, Option<OwnedSemaphorePermit>)>,
    events: Arc<Semaphore>,
    confirmed: watch::Receiver<Lsn>,
    task: JoinHandle<Result<(), RelayError>>,
}

impl AckWindow {
    pub fn spawn(capacity: usize, metrics: Metrics) -> Self {
        let capacity = capacity.max(1);
        let (sender, mut receiver) = mpsc::channel(capacity.saturating_mul(2));
        let events = Arc::new(Semaphore::new(capacity));
        let (confirmed_tx, confirmed) = watch::channel(Lsn::ZERO);
        let closing = events.clone();
        let task = tokio::spawn(async move {
            let result = Self::await_acks(&mut receiver, &confirmed_tx, &metrics).await;
            // A push waiting for room must not wait forever once nothing frees it.
            closing.close();
            result
        });
        Self {
            sender,
            events,
            confirmed,
            task,
        }
    }

    /// The task's loop: awaits each event's ack in order (freeing its place in the window)
    /// and raises the confirmable position when a confirmation comes up.
    async fn await_acks(
        receiver: &mut mpsc::Receiver<(InFlight, Option<OwnedSemaphorePermit>)>,
        confirmed_tx: &watch::Sender<Lsn>,
        metrics: &Metrics,
    ) -> Result<(), RelayError> {
        while let Some((item, _permit)) = receiver.recv().await {
            match item {
                InFlight::Event {
                    event_id,
                    ack,
                    published_at,
                } => {
                    let waiting = Instant::now();
                    let acked = ack.await;
                    crate::metrics::lap(&metrics.stages.ack_wait, waiting);
                    metrics.in_flight.dec();
                    match acked {
                        Ok(ack) => {
                            metrics
                                .publish_seconds
                                .observe(published_at.elapsed().as_secs_f64());
                            metrics.events_published.inc();
                            if ack.duplicate {
                                metrics.duplicates.inc();
                                tracing::debug!(event_id, "JetStream dropped a duplicate");
                            }
                        }
                        Err(source) => return Err(RelayError::Ack { event_id, source }),
                    }
                }
                InFlight::Confirm { lsn, committed_at } => {
                    let lag = committed_at
                        .and_then(|at| SystemTime::now().duration_since(at).ok())
                        .unwrap_or_default();
                    metrics.lag_seconds.set(lag.as_secs_f64());
                    confirmed_tx.send_if_modified(|current| {
                        let raised = lsn > *current;
                        if raised {
                            *current = lsn;
                        }
                        raised
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds an item; an event waits while the window holds `capacity` events. Fails once
    /// the task stopped on an error, which [`AckWindow::drain`] then returns.
    pub async fn push(&self, item: InFlight) -> Result<(), RelayError> {
        let permit = match item {
            InFlight::Event { .. } => Some(
                self.events
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| RelayError::AckWindowClosed)?,
            ),
            InFlight::Confirm { .. } => None,
        };
        self.sender
            .send((item, permit))
            .await
            .map_err(|_| RelayError::AckWindowClosed)
    }

    /// The newest position whose events (and all before) JetStream acknowledged.
    pub fn confirmed(&self) -> watch::Receiver<Lsn> {
        self.confirmed.clone()
    }

    /// Closes the window and waits for every pending ack. Returns the last confirmable
    /// position, and the error that stopped the task, if any.
    pub async fn drain(self) -> (Lsn, Result<(), RelayError>) {
        let Self {
            sender,
            confirmed,
            task,
            ..
        } = self;
        drop(sender);
        let result = match task.await {
            Ok(result) => result,
            Err(err) => Err(RelayError::AckTask(err)),
        };
        let lsn = *confirmed.borrow();
        (lsn, result)
    }
}
