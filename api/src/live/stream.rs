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

use crate::live::events::{KEEP_ALIVE, LiveCounts, LiveEvent};
use crate::live::hub::{Hub, Latest, StreamSlot};

/// How often an idle stream sends `: keep-alive` (proxies commonly close after 30-60 s).
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// A stream's state between the frames it yields.
pub struct Coalescer {
    hub: Hub,
    /// Opening frames, sent before anything else.
    opening: VecDeque<Bytes>,
    /// Every watched post's changes, as they come.
    changes: SelectAll<BoxStream<'static, LiveCounts>>,
    /// Per post, the newest counts not sent yet.
    pending: HashMap<Uuid, LiveCounts>,
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
fn changes(latest: Latest) -> BoxStream<'static, LiveCounts> {
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
            if let Some(counts) = due.and_then(|post_id| self.pending.remove(&post_id)) {
                self.next_slot.insert(counts.post_id, now + self.spacing);
                self.hub.metrics().live_events_sent.inc();
                self.keep_alive.reset();
                return Some(LiveEvent::Counts(counts).frame());
            }
            let closing = self.hub.closing().clone();
            tokio::select! {
                biased;
                () = closing.cancelled() => return None,
                change = self.changes.next(), if !self.changes.is_empty() => {
                    if let Some(counts) = change
                        && self.pending.insert(counts.post_id, counts).is_some()
                    {
                        self.hub.metrics().live_events_coalesced.inc();
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
