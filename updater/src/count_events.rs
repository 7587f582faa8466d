//! Count events: after a batch commits, each post whose counts it changed gets its new
//! absolute counts published on core NATS, `tally.counts.<post_id>` (see
//! [`tally_sql::CountsChanged`]), for pages that show counts live.
//!
//! Core NATS, not JetStream: the latest value wins and a lost one is repaired by the next,
//! so a publish that fails is logged and counted, never retried, and never fails the batch
//! (its counts are committed whatever happens to the news of them).

use std::time::Duration;

use tally_sql::CountsChanged;

use crate::metrics::Metrics;

/// Longest a batch's publishes may take: with NATS unreachable the client's buffer fills
/// and a publish would wait, holding up the next batch's commit for news that can be lost.
const PUBLISH_FOR: Duration = Duration::from_secs(1);

/// Publishes the count events of committed batches.
#[derive(Clone, Debug)]
pub struct CountEvents {
    client: async_nats::Client,
    metrics: Metrics,
    /// False when the event stream would capture the count events (see [`captured_by`]).
    enabled: bool,
}

impl CountEvents {
    /// A publisher on `client`. `stream_subjects` are the event stream's subjects: a stream
    /// made before the count events (`tally.>`) would store every count event and hand it to
    /// the updaters as an undecodable event, so then nothing is published and an error says
    /// how to narrow the stream.
    pub fn new(client: async_nats::Client, metrics: Metrics, stream_subjects: &[String]) -> Self {
        let probe = CountsChanged::subject_of(uuid::Uuid::nil());
        let capturing: Vec<&String> = stream_subjects
            .iter()
            .filter(|subject| captured_by(subject, &probe))
            .collect();
        if !capturing.is_empty() {
            tracing::error!(stream = tally_sql::STREAM, subjects = ?capturing,
                wanted = tally_sql::STREAM_SUBJECTS,
                "the stream would store the count events (tally.counts.<post_id>); they are not \
                 published until its subjects are narrowed, e.g. `nats stream edit TALLY \
                 --subjects 'tally.*.*.*'`");
        }
        Self {
            client,
            metrics,
            enabled: capturing.is_empty(),
        }
    }

    /// Publishes `changed`, the counts one commit left. Never fails: failures are counted.
    pub async fn publish(&self, changed: &[CountsChanged]) {
        if !self.enabled || changed.is_empty() {
            return;
        }
        let mut published = 0;
        let all = async {
            for counts in changed {
                let sent = self
                    .client
                    .publish(counts.subject(), counts.to_json().into())
                    .await;
                match sent {
                    Ok(()) => published += 1,
                    Err(err) => {
                        tracing::warn!(error = %err, post_id = %counts.post_id,
                            "a count event was not published; the next change repairs it");
                    }
                }
            }
        };
        if tokio::time::timeout(PUBLISH_FOR, all).await.is_err() {
            tracing::warn!(
                unsent = changed.len() - published,
                "publishing count events took too long (NATS unreachable?); the rest are dropped"
            );
        }
        self.metrics.count_events("published", published);
        self.metrics
            .count_events("failed", changed.len() - published);
    }
}

/// Whether a stream subject (wildcards `*` and `>` allowed) matches the literal `subject`.
fn captured_by(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (wanted, Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::captured_by;

    #[test]
    fn a_stream_made_with_the_old_subjects_captures_the_count_events() {
        let subject = "tally.counts.0193";
        assert!(captured_by("tally.>", subject));
        assert!(captured_by(">", subject));
        assert!(captured_by("tally.counts.*", subject));
    }

    #[test]
    fn the_events_subjects_leave_the_count_events_out() {
        let subject = "tally.counts.0193";
        assert!(!captured_by(tally_sql::STREAM_SUBJECTS, subject));
        assert!(!captured_by("tally.like.>", subject));
        assert!(!captured_by("tally.counts", subject));
        assert!(captured_by(
            tally_sql::STREAM_SUBJECTS,
            "tally.like.added.0193"
        ));
    }
}
