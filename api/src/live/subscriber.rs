//! The api's NATS subscriptions: `tally.counts.>` (the updater's count events) feeding the
//! hub and the feed's counts cache, `tally.like.*.*` (the like events) telling the
//! `liked_by_me` cache whose answers changed; and the re-reads
//! that repair what core NATS may lose: every watched post's counts are read from Postgres
//! again every [`REREAD_EVERY`], and at once whenever the NATS connection comes back (a
//! change published while it was down reached no one).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tally_sql::{COUNTS_SUBJECTS, CountsChanged, Event, LIKE_SUBJECTS};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::instrument;

use crate::counts_cache::CountsCache;
use crate::liked_cache::LikedCache;
use crate::live::hub::Hub;
use crate::store::Store;

/// How often every watched post's counts are read again, repairing a count event lost on
/// core NATS (which keeps nothing): a stream's counts are at most this stale after a loss.
pub const REREAD_EVERY: Duration = Duration::from_secs(30);

/// Most ids one re-read query asks for.
const REREAD_BATCH: usize = 1000;

/// The background tasks of live streams; they end with the hub.
#[derive(Debug)]
pub struct Subscriber {
    tasks: Vec<JoinHandle<()>>,
}

impl Subscriber {
    /// Connects to NATS in the background (the api serves, and streams open, while it is
    /// down) and starts the subscription and the re-reader.
    pub async fn start(
        hub: Hub,
        caches: (CountsCache, LikedCache),
        store: Store,
        nats_url: &str,
        client_name: String,
    ) -> Self {
        let (counts, liked) = caches;
        let reconnected = Arc::new(Notify::new());
        let notify = reconnected.clone();
        let forget = liked.clone();
        let options = async_nats::ConnectOptions::new()
            .name(client_name)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let notify = notify.clone();
                let forget = forget.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("live counts: connected to NATS");
                            notify.notify_one();
                            // Like events sent while it was down reached no one.
                            forget.forget_all();
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("live counts: NATS connection lost; reconnecting");
                        }
                        other => tracing::info!(event = %other, "live counts: NATS"),
                    }
                }
            });
        let mut tasks = vec![tokio::spawn(reread(hub.clone(), store, reconnected))];
        match options.connect(nats_url).await {
            Ok(client) => tasks.push(tokio::spawn(subscribe(hub, (counts, liked), client))),
            // Only a malformed URL gets here (retry_on_initial_connect waits for the server);
            // config.rs refuses those at start.
            Err(err) => tracing::error!(error = %err, "live counts: cannot use NATS_URL"),
        }
        Self { tasks }
    }

    /// Waits until the tasks have ended (after [`Hub::close`]).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Hands every count event to the hub and the counts cache, and every like event to the
/// liked cache, until the api shuts down.
async fn subscribe(hub: Hub, caches: (CountsCache, LikedCache), client: async_nats::Client) {
    let (cache, liked) = caches;
    let Some((mut counts, mut likes)) = subscriptions(&hub, &client).await else {
        return;
    };
    loop {
        tokio::select! {
            () = hub.closing().cancelled() => break,
            message = counts.next() => match message {
                Some(message) => match serde_json::from_slice::<CountsChanged>(&message.payload) {
                    Ok(counts) => {
                        cache.counts_changed(&counts);
                        hub.offer(counts.into());
                    }
                    Err(err) => tracing::warn!(
                        error = %err, subject = %message.subject, "live counts: unreadable event"
                    ),
                },
                None => break,
            },
            message = likes.next() => match message {
                Some(message) => match Event::decode(&message.payload) {
                    Ok(event) => liked.event(&event.actor, event.post_id),
                    Err(err) => tracing::warn!(
                        error = %err, subject = %message.subject, "liked cache: unreadable event"
                    ),
                },
                None => break,
            },
        }
    }
    let _ = counts.unsubscribe().await;
    let _ = likes.unsubscribe().await;
}

/// The count and like subscriptions, retried every second until NATS takes them (None: the
/// api shut down first).
async fn subscriptions(
    hub: &Hub,
    client: &async_nats::Client,
) -> Option<(async_nats::Subscriber, async_nats::Subscriber)> {
    loop {
        let both = async {
            let counts = client.subscribe(COUNTS_SUBJECTS).await?;
            let likes = client.subscribe(LIKE_SUBJECTS).await?;
            Ok::<_, async_nats::SubscribeError>((counts, likes))
        };
        match both.await {
            Ok(both) => return Some(both),
            Err(err) => {
                tracing::warn!(error = %err, "live counts: cannot subscribe yet");
                tokio::select! {
                    () = hub.closing().cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Re-reads every watched post every [`REREAD_EVERY`] and after each (re)connection.
async fn reread(hub: Hub, store: Store, reconnected: Arc<Notify>) {
    let mut every = tokio::time::interval(REREAD_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = hub.closing().cancelled() => return,
            _ = every.tick() => hub.forget_unwatched(),
            () = reconnected.notified() => {}
        }
        reread_once(&hub, &store).await;
    }
}

/// Reads the counts of every watched post and offers them to the hub (which keeps only
/// newer ones).
#[instrument(skip_all)]
pub async fn reread_once(hub: &Hub, store: &Store) {
    let watched = hub.watched();
    for batch in watched.chunks(REREAD_BATCH) {
        match store.live_counts(batch).await {
            Ok(rows) => {
                for row in rows {
                    hub.offer(row.into());
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "live counts: re-read failed; next time");
                return;
            }
        }
    }
}
