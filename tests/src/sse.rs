//! A reader of `text/event-stream` answers (the api's `GET /v1/live`), for the tests and the
//! bench: it splits the body into events and comment lines as an `EventSource` would.

use std::time::Duration;

/// One thing a stream sent: an event, or a comment line (`: keep-alive`).
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    Event {
        /// The `event:` field (`counts`, `missing`).
        event: String,
        /// The `id:` field, empty when absent.
        id: String,
        /// The `data:` field, parsed as JSON (Null when it is not JSON).
        data: serde_json::Value,
    },
    Comment(String),
}

/// An open stream, read as it arrives.
#[derive(Debug)]
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event or comment; None when the stream ended (or broke).
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Like [`SseReader::next`], giving up (None) after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Sse> {
        tokio::time::timeout(timeout, self.next())
            .await
            .ok()
            .flatten()
    }

    /// The next event (skipping comments) within `timeout`: (event, id, data).
    pub async fn next_event(
        &mut self,
        timeout: Duration,
    ) -> Option<(String, String, serde_json::Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Sse::Event { event, id, data } => return Some((event, id, data)),
                Sse::Comment(_) => continue,
            }
        }
    }

    /// Reads `counts` events until one satisfies `done` or `timeout` passes; every `counts`
    /// event's data read on the way, the satisfying one last (None: it never came).
    pub async fn counts_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> (Vec<serde_json::Value>, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some((event, _, data)) if event == "counts" => {
                    let finished = done(&data);
                    seen.push(data);
                    if finished {
                        return (seen, true);
                    }
                }
                Some(_) => {}
                None => return (seen, false),
            }
        }
    }
}

fn parse(block: &str) -> Sse {
    let (mut event, mut id, mut data, mut comment) =
        (String::new(), String::new(), String::new(), None);
    for line in block.lines() {
        if let Some(text) = line.strip_prefix(':') {
            comment = Some(text.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = value.to_owned();
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = value.to_owned();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
    }
    match comment {
        Some(text) if event.is_empty() && data.is_empty() => Sse::Comment(text),
        _ => Sse::Event {
            event,
            id,
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        },
    }
}
