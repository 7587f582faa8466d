//! Scenario 3's second baseline, the broker's own ceiling: a plain async-nats publisher
//! sending the backlog's messages (the same subjects, payloads, headers and `Nats-Msg-Id`s,
//! built by the relay's own mapping from the outbox rows) to a fresh stream of the relay's
//! configuration on a fresh nats-server of the same build, keeping the relay's window of
//! unacknowledged publishes.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, context::PublishAckFuture};
use tally_relay::outbox::OutboxEvent;
use tally_tests::NatsServer;

/// The relay's defaults: its ack timeout and its window (`TALLY_RELAY_MAX_IN_FLIGHT`).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const WINDOW: usize = tally_relay::config::DEFAULT_MAX_IN_FLIGHT;

/// The outbox rows committed at or after `since`, in commit order, as the relay maps them.
pub async fn backlog_events(
    db: &tokio_postgres::Client,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<OutboxEvent>> {
    let rows = db
        .query(
            "SELECT event_id::text, event_type, subject, payload::text, headers::text \
             FROM outbox WHERE created_at >= $1 ORDER BY created_at",
            &[&since],
        )
        .await
        .context("reading the backlog for the broker baseline")?;
    Ok(rows
        .iter()
        .map(|row| {
            let headers: String = row.get(4);
            let payload: String = row.get(3);
            OutboxEvent::new(
                row.get(0),
                row.get::<_, &str>(1),
                row.get(2),
                payload.into(),
                Some(headers.as_bytes()),
            )
        })
        .collect())
}

/// Publishes `events` to a fresh stream named like the relay's, with `like`'s subjects,
/// storage and limits, on a fresh nats-server; returns the events per second from the
/// first publish to the last acknowledgement.
pub async fn publish_rate(
    like: &jetstream::stream::Config,
    events: Vec<OutboxEvent>,
) -> anyhow::Result<f64> {
    let server = NatsServer::start().await;
    let client = async_nats::connect(server.url())
        .await
        .context("connecting to the baseline's nats-server")?;
    let context = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .max_ack_inflight(WINDOW.saturating_add(64).max(5_000))
        .build(client);
    context
        .create_stream(jetstream::stream::Config {
            name: like.name.clone(),
            subjects: like.subjects.clone(),
            storage: like.storage,
            retention: like.retention,
            discard: like.discard,
            duplicate_window: like.duplicate_window,
            max_age: like.max_age,
            max_messages: like.max_messages,
            max_bytes: like.max_bytes,
            num_replicas: like.num_replicas,
            ..Default::default()
        })
        .await
        .context("creating the baseline stream")?;

    let count = events.len();
    // As in the relay: acks are awaited in order by their own task, so publishing waits
    // only while the window is full.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<PublishAckFuture>(WINDOW);
    let acks = tokio::spawn(async move {
        while let Some(ack) = receiver.recv().await {
            ack.await
                .context("a baseline publish was not acknowledged")?;
        }
        anyhow::Ok(())
    });
    let started = Instant::now();
    for event in events {
        let ack = context
            .publish_with_headers(event.subject, event.headers, event.payload)
            .await
            .context("publishing to the baseline stream")?;
        if sender.send(ack).await.is_err() {
            break;
        }
    }
    drop(sender);
    acks.await.context("the baseline's ack task")??;
    let seconds = started.elapsed().as_secs_f64();
    drop(server);
    Ok(count as f64 / seconds)
}
