//! One live stream: its opening events, then each watched post's changes, at most
//! `TALLY_LIVE_MAX_PER_SEC` per post and always the newest counts (a change that arrives
//! while the post waits for its next slot replaces the one waiting), and a keep-alive
//! comment every 15 s. It holds at most one pending value per post, so a client that reads
//! slowly costs no more memory than a fast one; it just sees fewer, newer values.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use uuid::Uuid;

use crate::live::events::{KEEP_ALIVE, LiveEvent};
use crate::live::hub::{Hub, Latest, StreamSlot, Versioned};

/// How often an idle stream sends `: keep-alive` (proxies commonly close after 30-60 s).
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// A stream's state between the frames it yields.
pub struct Coalescer {
    hub: Hub,
    /// Opening frames, sent before anything else.
    opening: VecDeque<Bytes>,
    /// Every watched post's changes, as they come.
    changes: SelectAll<BoxStream<'static, Versioned>>,
    /// Per post, the newest counts not sent yet.
    pending: HashMap<Uuid, Versioned>,
    /// Per post, the version last sent: a send that skips versions coalesced them away.
    sent: HashMap<Uuid, u64>,
    /// Per post, the earliest its next event may go.
    next_slot: HashMap<Uuid, Instant>,
    spacing: Duration,
    keep_alive: Interval,
    /// Freed (under the cap) when the stream is dropped: the client left or the api stopped.
    _slot: StreamSlot,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// A post's changes after the value already seen: each time its channel changes, the newest.
fn changes(latest: Latest) -> BoxStream<'static, Versioned> {
    futures::stream::unfold(latest, |mut latest| async move {
        loop {
            latest.changed().await.ok()?;
            let newest = latest.borrow_and_update().clone();
            if let Some(counts) = newest {
                return Some((counts, latest));
            }
        }
    })
    .boxed()
}

impl Coalescer {
    /// A stream that first sends `opening` (the current counts and the missing ids, already
    /// framed), then the changes of the posts in `followed`, whose current values count as
    /// sent now.
    pub fn new(
        hub: Hub,
        slot: StreamSlot,
        opening: Vec<LiveEvent>,
        followed: Vec<(Uuid, Latest)>,
        max_per_sec: u32,
    ) -> Self {
        let now = Instant::now();
        let spacing = Duration::from_secs(1) / max_per_sec.max(1);
        let mut keep_alive = tokio::time::interval_at(now + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        hub.metrics().live_events_sent.inc_by(opening.len() as u64);
        Self {
            next_slot: followed
                .iter()
                .map(|(id, _)| (*id, now + spacing))
                .collect(),
            sent: followed
                .iter()
                .map(|(id, latest)| (*id, latest.borrow().as_ref().map_or(0, |v| v.version)))
                .collect(),
            changes: followed
                .into_iter()
                .map(|(_, latest)| changes(latest))
                .collect(),
            opening: opening.iter().map(LiveEvent::frame).collect(),
            pending: HashMap::new(),
            spacing,
            keep_alive,
            hub,
            _slot: slot,
        }
    }

    /// The frames as a response body's stream; it ends when the api shuts down.
    pub fn into_stream(self) -> BoxStream<'static, Bytes> {
        futures::stream::unfold(self, |mut stream| async move {
            let frame = stream.next_frame().await?;
            Some((frame, stream))
        })
        .boxed()
    }

    /// A pending post whose slot has come, with the earliest slot among those still waiting.
    fn due(&self, now: Instant) -> (Option<Uuid>, Option<Instant>) {
        let mut earliest = None;
        for post_id in self.pending.keys() {
            let slot = self.next_slot.get(post_id).copied().unwrap_or(now);
            if slot <= now {
                return (Some(*post_id), None);
            }
            earliest = Some(earliest.map_or(slot, |at: Instant| at.min(slot)));
        }
        (None, earliest)
    }

    /// The next frame to write, waiting for one; None once the api shuts down.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.opening.pop_front() {
                return Some(frame);
            }
            let now = Instant::now();
            let (due, wake) = self.due(now);
            if let Some(newest) = due.and_then(|post_id| self.pending.remove(&post_id)) {
                let post_id = newest.counts.post_id;
                self.next_slot.insert(post_id, now + self.spacing);
                let last = self.sent.insert(post_id, newest.version).unwrap_or(0);
                let metrics = self.hub.metrics();
                metrics.live_events_sent.inc();
                metrics
                    .live_events_coalesced
                    .inc_by(newest.version.saturating_sub(last + 1));
                self.keep_alive.reset();
                return Some(LiveEvent::Counts(newest.counts).frame());
            }
            let closing = self.hub.closing().clone();
            tokio::select! {
                biased;
                () = closing.cancelled() => return None,
                change = self.changes.next(), if !self.changes.is_empty() => {
                    if let Some(newest) = change {
                        self.pending.insert(newest.counts.post_id, newest);
                    }
                }
                () = sleep_until(wake), if wake.is_some() => {}
                _ = self.keep_alive.tick() => return Some(Bytes::from_static(KEEP_ALIVE)),
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::events::LiveCounts;
    use crate::metrics::Metrics;
    use chrono::DateTime;

    fn counts(post_id: Uuid, likes: i64) -> LiveCounts {
        LiveCounts {
            post_id,
            likes,
            comments: 0,
            updated_at: DateTime::from_timestamp_micros(likes).unwrap_or_default(),
        }
    }

    /// A stream following `post_id` at 4 events a second, its opening event taken.
    async fn following(hub: &Hub, post_id: Uuid) -> Coalescer {
        let mut latest = hub.watch(post_id);
        hub.offer(counts(post_id, 0));
        let first = latest
            .borrow_and_update()
            .clone()
            .map(|v| LiveEvent::Counts(v.counts));
        let slot = hub.try_open().expect("a slot");
        let mut stream = Coalescer::new(
            hub.clone(),
            slot,
            first.into_iter().collect(),
            vec![(post_id, latest)],
            4,
        );
        assert!(stream.next_frame().await.is_some());
        stream
    }

    fn likes_of(frame: &Bytes) -> Option<i64> {
        let text = std::str::from_utf8(frame).ok()?;
        let data = text.lines().find_map(|line| line.strip_prefix("data: "))?;
        serde_json::from_str::<serde_json::Value>(data).ok()?["likes"].as_i64()
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_one_slot_are_sent_once_as_the_newest() {
        let hub = Hub::new(10, Metrics::default());
        let post = Uuid::now_v7();
        let mut stream = following(&hub, post).await;
        let opened = Instant::now();

        for likes in 1..=5 {
            hub.offer(counts(post, likes));
            tokio::task::yield_now().await;
        }
        let frame = stream.next_frame().await.expect("a frame");

        assert_eq!(likes_of(&frame), Some(5));
        assert!(
            opened.elapsed() >= Duration::from_millis(250),
            "sent before its slot"
        );
        assert_eq!(hub.metrics().live_events_coalesced.get(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_sends_a_keep_alive_comment_every_fifteen_seconds() {
        let hub = Hub::new(10, Metrics::default());
        let mut stream = following(&hub, Uuid::now_v7()).await;
        let opened = Instant::now();

        let frame = stream.next_frame().await.expect("a frame");

        assert_eq!(frame, Bytes::from_static(KEEP_ALIVE));
        assert_eq!(opened.elapsed(), KEEP_ALIVE_EVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_hub_ends_every_stream() {
        let hub = Hub::new(10, Metrics::default());
        let mut stream = following(&hub, Uuid::now_v7()).await;

        hub.close();

        assert_eq!(stream.next_frame().await, None);
    }
}
