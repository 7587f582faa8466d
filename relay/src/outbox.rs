//! An `outbox` row turned into the NATS message it stands for: subject, the payload's exact
//! bytes, and the headers (`Nats-Msg-Id`, `Tally-Event-Type`, plus the row's own headers).

use std::str::FromStr;

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use bytes::Bytes;

use crate::pgoutput::{Row, Value};

/// The table whose inserts are events.
pub const TABLE: &str = "outbox";

/// One event ready to publish.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub event_id: String,
    pub subject: String,
    pub payload: Bytes,
    pub headers: HeaderMap,
}

/// Why an inserted row is not a publishable event.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox row has no {column} column")]
    MissingColumn { column: &'static str },
    #[error("outbox row's {column} is {found} (expected a text value)")]
    NotText {
        column: &'static str,
        found: &'static str,
    },
    #[error("outbox row's {column} is not UTF-8")]
    NotUtf8 {
        column: &'static str,
        #[source]
        source: std::str::Utf8Error,
    },
}

impl OutboxEvent {
    /// Maps an inserted `outbox` row to its message.
    pub fn from_row(row: &Row<'_>) -> Result<Self, OutboxError> {
        let event_id = text(row, "event_id")?.to_owned();
        let event_type = text(row, "event_type")?;
        let subject = text(row, "subject")?.to_owned();
        let payload = raw(row, "payload")?.clone();
        let headers = match row.get("headers") {
            Some(Value::Text(json)) => Some(json.as_ref()),
            _ => None,
        };
        Ok(Self::new(event_id, event_type, subject, payload, headers))
    }

    /// The message for a row's column values in Postgres' text format (`headers` is the
    /// JSON object of extra headers, if any).
    pub fn new(
        event_id: String,
        event_type: &str,
        subject: String,
        payload: Bytes,
        headers: Option<&[u8]>,
    ) -> Self {
        // Extra headers are optional metadata (trace context): a row whose headers cannot be
        // read still publishes, without them, rather than stopping the stream.
        let mut headers = match headers {
            Some(json) if !is_empty_object(json) => extra_headers(&event_id, json),
            _ => HeaderMap::new(),
        };
        headers.insert(MSG_ID, event_id.as_str());
        headers.insert(EVENT_TYPE, event_type);
        Self {
            event_id,
            subject,
            payload,
            headers,
        }
    }
}

/// The two headers every event carries, named once rather than parsed per event.
const MSG_ID: HeaderName = HeaderName::from_static(tally_sql::HEADER_MSG_ID);
const EVENT_TYPE: HeaderName = HeaderName::from_static(tally_sql::HEADER_EVENT_TYPE);

/// Whether a row's `headers` is `{}` (the column's default, most rows), which needs no
/// JSON parse.
fn is_empty_object(json: &[u8]) -> bool {
    json.trim_ascii() == b"{}"
}

fn raw<'r>(row: &'r Row<'_>, column: &'static str) -> Result<&'r Bytes, OutboxError> {
    match row.get(column) {
        Some(Value::Text(bytes)) => Ok(bytes),
        Some(Value::Null) => Err(OutboxError::NotText {
            column,
            found: "NULL",
        }),
        Some(Value::UnchangedToast) => Err(OutboxError::NotText {
            column,
            found: "an unchanged TOAST value",
        }),
        Some(Value::Binary(_)) => Err(OutboxError::NotText {
            column,
            found: "a binary value",
        }),
        None => Err(OutboxError::MissingColumn { column }),
    }
}

fn text<'r>(row: &'r Row<'_>, column: &'static str) -> Result<&'r str, OutboxError> {
    let bytes = raw(row, column)?;
    std::str::from_utf8(bytes).map_err(|source| OutboxError::NotUtf8 { column, source })
}

/// Every string key/value of the row's `headers` object that is a legal NATS header.
/// `Nats-*` keys are dropped: they steer JetStream (de-duplication, expectations) and only
/// the relay sets those.
fn extra_headers(event_id: &str, json: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let object = match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => {
            tracing::warn!(event_id, "outbox headers are not a JSON object; ignored");
            return headers;
        }
        Err(err) => {
            tracing::warn!(event_id, error = %err, "outbox headers are not JSON; ignored");
            return headers;
        }
    };
    for (key, value) in object {
        let serde_json::Value::String(value) = value else {
            tracing::warn!(event_id, header = %key, "outbox header value is not a string; ignored");
            continue;
        };
        if key.len() >= 5 && key[..5].eq_ignore_ascii_case("nats-") {
            tracing::warn!(event_id, header = %key, "outbox header in the Nats- namespace; ignored");
            continue;
        }
        let Ok(name) = HeaderName::from_str(&key) else {
            tracing::warn!(event_id, header = %key, "outbox header name is not valid for NATS; ignored");
            continue;
        };
        if value.contains(['\r', '\n']) {
            tracing::warn!(event_id, header = %key, "outbox header value spans lines; ignored");
            continue;
        }
        headers.insert(name, HeaderValue::from(value.as_str()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::{Decoder, Message};

    /// An `outbox` Relation then an Insert of `values`, decoded.
    fn event(values: &[Option<&str>]) -> Result<OutboxEvent, OutboxError> {
        let columns = [
            "event_id",
            "event_type",
            "subject",
            "post_id",
            "payload",
            "headers",
            "created_at",
        ];
        let mut relation = vec![b'R'];
        relation.extend_from_slice(&1u32.to_be_bytes());
        relation.extend_from_slice(b"public\0outbox\0d");
        relation.extend_from_slice(&(columns.len() as u16).to_be_bytes());
        for column in columns {
            relation.push(0);
            relation.extend_from_slice(column.as_bytes());
            relation.push(0);
            relation.extend_from_slice(&[0; 8]);
        }
        let mut insert = vec![b'I'];
        insert.extend_from_slice(&1u32.to_be_bytes());
        insert.push(b'N');
        insert.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for value in values {
            match value {
                None => insert.push(b'n'),
                Some(text) => {
                    insert.push(b't');
                    insert.extend_from_slice(&(text.len() as u32).to_be_bytes());
                    insert.extend_from_slice(text.as_bytes());
                }
            }
        }
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&Bytes::from(relation)).is_ok());
        match decoder.decode(&Bytes::from(insert)) {
            Ok(Message::Insert(row)) => OutboxEvent::from_row(&row),
            other => panic!("not an insert: {other:?}"),
        }
    }

    fn header(event: &OutboxEvent, name: &str) -> Option<String> {
        event.headers.get(name).map(|v| v.as_str().to_owned())
    }

    #[test]
    fn a_row_becomes_subject_exact_payload_and_headers() {
        let payload = r#"{"version":1,  "id":"e1"}"#;
        let event = event(&[
            Some("e1"),
            Some("like.added"),
            Some("tally.like.added.p1"),
            Some("p1"),
            Some(payload),
            Some(r#"{"traceparent":"00-abc-def-01","n":1,"Nats-Expected-Stream":"X"}"#),
            Some("2026-01-01 00:00:00+00"),
        ]);
        let Ok(event) = event else {
            panic!("{event:?}");
        };
        assert_eq!(event.subject, "tally.like.added.p1");
        assert_eq!(event.payload, Bytes::from(payload));
        assert_eq!(header(&event, "Nats-Msg-Id").as_deref(), Some("e1"));
        assert_eq!(
            header(&event, "Tally-Event-Type").as_deref(),
            Some("like.added")
        );
        assert_eq!(
            header(&event, "traceparent").as_deref(),
            Some("00-abc-def-01")
        );
        assert_eq!(header(&event, "n"), None);
        assert_eq!(header(&event, "Nats-Expected-Stream"), None);
    }

    #[test]
    fn a_null_subject_is_an_error_naming_the_column() {
        let event = event(&[
            Some("e1"),
            Some("like.added"),
            None,
            Some("p1"),
            Some("{}"),
            Some("{}"),
            Some("now"),
        ]);
        assert_eq!(
            event.err().map(|e| e.to_string()).as_deref(),
            Some("outbox row's subject is NULL (expected a text value)")
        );
    }
}
