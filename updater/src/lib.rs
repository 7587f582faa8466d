//! tally's updater: pulls events off the JetStream stream in batches and applies them to
//! `post_counts` exactly once: inbox rows and summed deltas commit in one transaction, and
//! the batch is acked only after that commit, so a redelivered event changes nothing.
//!
//! Start it with [`Updater::build`] then [`Updater::run_until_stopped`].

pub mod batch;
pub mod config;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use tally_sql::Event;
use tokio_postgres::NoTls;
use tracing::instrument;

pub use config::Config;

use crate::batch::{DeadLetter, Decoded};

/// How long a failed batch waits before JetStream redelivers it.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest pause between attempts to reach a component that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the updater could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error("DATABASE_URL is not a valid Postgres URL")]
    DatabaseUrl(#[source] tokio_postgres::Error),
    #[error("could not build the Postgres pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    #[error("could not connect to NATS at {url}")]
    Nats {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("could not create the durable consumer {name}")]
    Consumer {
        name: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
}

/// Why one batch could not be applied (it is redelivered).
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("no Postgres connection")]
    Connection(#[source] deadpool_postgres::PoolError),
    #[error("the batch transaction failed")]
    Transaction(#[source] tokio_postgres::Error),
}

/// A built updater, connected and bound to its durable consumer.
pub struct Updater {
    config: Config,
    pool: Pool,
    consumer: PullConsumer,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Updater {
    /// Connects to NATS, waits for the stream (the relay creates it), and creates or binds the
    /// durable pull consumer. Postgres is connected lazily, so a database outage at start is
    /// waited out like one later.
    pub async fn build(config: Config) -> Result<Self, UpdaterError> {
        let pg_config: tokio_postgres::Config = config
            .database_url
            .parse()
            .map_err(UpdaterError::DatabaseUrl)?;
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(2)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(UpdaterError::Pool)?;

        let client = async_nats::ConnectOptions::new()
            .name("tally-updater")
            .retry_on_initial_connect()
            .connect(&config.nats_url)
            .await
            .map_err(|source| UpdaterError::Nats {
                url: config.nats_url.clone(),
                source,
            })?;
        let js = jetstream::new(client);
        let stream = wait_for_stream(&js).await;
        let consumer = stream
            .get_or_create_consumer(
                &config.consumer,
                jetstream::consumer::pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    description: Some("tally-updater: applies events to post_counts".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 20_000,
                    filter_subject: tally_sql::STREAM_SUBJECTS.into(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| UpdaterError::Consumer {
                name: config.consumer.clone(),
                source,
            })?;
        Ok(Self {
            config,
            pool,
            consumer,
        })
    }

    /// Applies batches until `shutdown` resolves. A batch already pulled is finished
    /// (committed and acked) before returning.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(consumer = %self.config.consumer, "updater running");
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let messages = tokio::select! {
                () = &mut shutdown => break,
                messages = self.pull() => messages,
            };
            let messages = match messages {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(error = %err, "pulling from JetStream failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            match self.process(&messages).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, source = ?std::error::Error::source(&err),
                        "batch not applied; it will be redelivered");
                    for message in &messages {
                        let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!("updater stopped cleanly");
    }

    /// Pulls up to a batch, waiting at most the batch wait for it to fill.
    async fn pull(&self) -> Result<Vec<jetstream::Message>, async_nats::Error> {
        let mut stream = self
            .consumer
            .batch()
            .max_messages(self.config.batch_size as usize)
            .expires(self.config.batch_wait)
            .messages()
            .await?;
        let mut messages = Vec::new();
        while let Some(message) = stream.next().await {
            messages.push(message?);
        }
        Ok(messages)
    }

    /// Applies and then acks one batch.
    #[instrument(skip_all, fields(size = messages.len()))]
    async fn process(&self, messages: &[jetstream::Message]) -> Result<(), BatchError> {
        let decoded: Vec<Decoded> = messages.iter().map(decode).collect();
        let mut client = self.pool.get().await.map_err(BatchError::Connection)?;
        let txn = client
            .transaction()
            .await
            .map_err(BatchError::Transaction)?;
        let outcome = batch::apply(&txn, &decoded)
            .await
            .map_err(BatchError::Transaction)?;
        txn.commit().await.map_err(BatchError::Transaction)?;
        tracing::debug!(?outcome, "batch applied");

        // Only now is the batch durable: ack it. A lost ack means a redelivery, which the
        // inbox turns into a no-op.
        let acks = messages.iter().zip(&decoded).map(|(message, decoded)| async move {
            let kind = match decoded {
                Decoded::Event(_) => AckKind::Ack,
                // Never redeliver a message that can never apply.
                Decoded::Poison(_) => AckKind::Term,
            };
            if let Err(err) = message.ack_with(kind).await {
                tracing::warn!(error = %err, "ack failed; the event will be redelivered and dropped as a duplicate");
            }
        });
        futures::future::join_all(acks).await;
        Ok(())
    }
}

fn decode(message: &jetstream::Message) -> Decoded {
    match Event::decode(&message.payload) {
        Ok(event) => Decoded::Event(event),
        Err(err) => {
            let event_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(tally_sql::HEADER_MSG_ID))
                .map(|v| v.as_str().to_owned());
            tracing::warn!(subject = %message.subject, error = %err, "dead-lettering an undecodable event");
            Decoded::Poison(DeadLetter {
                subject: message.subject.to_string(),
                event_id,
                payload: message.payload.to_vec(),
                reason: err.to_string(),
            })
        }
    }
}

/// The stream is created by the relay; until it exists there is nothing to consume.
async fn wait_for_stream(js: &jetstream::Context) -> jetstream::stream::Stream {
    let mut backoff = Duration::from_millis(100);
    loop {
        match js.get_stream(tally_sql::STREAM).await {
            Ok(stream) => return stream,
            Err(err) => {
                tracing::info!(stream = tally_sql::STREAM, error = %err,
                    "waiting for the stream (the relay creates it)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
