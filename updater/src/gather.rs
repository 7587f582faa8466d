//! Gathering batches at the stream's speed: a batch takes what has arrived and goes, and the
//! next one gathers while it commits, so batches grow with the load by themselves (as group
//! commit does) and the loop waits only when the stream is idle.
//!
//! A fixed wait to fill each batch cost every event up to that wait when the load was light,
//! and gained nothing under a backlog, where the pull stream always has messages ready.

use std::future::Future;

use async_nats::jetstream::{self, consumer::pull::Stream};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

/// The messages pulled but not yet in a batch.
#[derive(Debug)]
pub(crate) struct Gatherer {
    ready: Vec<jetstream::Message>,
    batch_size: usize,
    /// The pull stream ended (it is reopened once `ready` is used up).
    ended: bool,
}

impl Gatherer {
    pub(crate) fn new(batch_size: u32) -> Self {
        Self {
            ready: Vec::new(),
            batch_size: batch_size as usize,
            ended: false,
        }
    }

    /// The pull stream was opened again.
    pub(crate) fn reopened(&mut self) {
        self.ended = false;
    }

    /// The next batch: what has been gathered, topped up with every message already
    /// arrived, up to the batch size. With nothing gathered, waits for a first message (or
    /// `stop`). None when stopped, or when the pull stream ended with nothing gathered.
    pub(crate) async fn next_batch(
        &mut self,
        stream: &mut Stream,
        stop: &CancellationToken,
    ) -> Option<Vec<jetstream::Message>> {
        while self.ready.is_empty() {
            if self.ended {
                return None;
            }
            let next = tokio::select! {
                () = stop.cancelled() => return None,
                next = stream.next() => next,
            };
            if !self.take(next) {
                // A pull error: give the server a moment rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        while !self.ended && self.ready.len() < self.batch_size {
            let Some(next) = stream.next().now_or_never() else {
                break;
            };
            if !self.take(next) {
                break;
            }
        }
        let rest = self.ready.split_off(self.ready.len().min(self.batch_size));
        Some(std::mem::replace(&mut self.ready, rest))
    }

    /// Runs `work` (a batch's commit) while gathering the messages that arrive meanwhile,
    /// up to a batch, for the next batch.
    pub(crate) async fn during<T>(
        &mut self,
        stream: &mut Stream,
        work: impl Future<Output = T>,
    ) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            let room = !self.ended && self.ready.len() < self.batch_size;
            tokio::select! {
                biased;
                done = &mut work => return done,
                next = stream.next(), if room => {
                    self.take(next);
                }
            }
        }
    }

    /// Whatever was gathered and not yet batched (to hand back at shutdown).
    pub(crate) fn take_ready(&mut self) -> Vec<jetstream::Message> {
        std::mem::take(&mut self.ready)
    }

    /// Keeps a pulled message; false on a pull error.
    fn take(&mut self, next: Option<Result<jetstream::Message, impl std::fmt::Display>>) -> bool {
        match next {
            Some(Ok(message)) => {
                self.ready.push(message);
                true
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "pulling from JetStream failed; retrying");
                false
            }
            None => {
                self.ended = true;
                true
            }
        }
    }
}
