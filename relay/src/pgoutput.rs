//! A decoder for the pgoutput messages (protocol version 1) that pgwire-replication passes
//! through undecoded: Relation ('R') describes a table's columns, Insert ('I') carries a new
//! row whose values are matched to column names through the Relation sent before it.
//! Begin and Commit never reach here; the replication client turns them into events.

use std::collections::HashMap;

use bytes::Bytes;

/// A table as described by the latest Relation message for its oid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    pub columns: Vec<String>,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// A TOASTed value the row did not change; its data is not in the message.
    UnchangedToast,
    /// The value in Postgres' text output format, byte for byte.
    Text(Bytes),
    /// The value in binary format (only when the stream asked for it).
    Binary(Bytes),
}

/// A decoded row of an insert, with its values looked up by column name.
#[derive(Debug)]
pub struct Row<'a> {
    pub relation: &'a Relation,
    values: Vec<Value>,
}

impl Row<'_> {
    /// The value of `column`, or `None` when the relation has no such column.
    pub fn get(&self, column: &str) -> Option<&Value> {
        let index = self.relation.columns.iter().position(|c| c == column)?;
        self.values.get(index)
    }
}

/// What one pgoutput message meant to the relay.
#[derive(Debug)]
pub enum Message<'a> {
    /// A Relation message was recorded.
    Relation(&'a Relation),
    /// A row was inserted.
    Insert(Row<'a>),
    /// Anything else (Origin, Type, Update, Delete, Truncate, ...), by its tag.
    Other(u8),
}

/// Why a pgoutput message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message truncated while reading {what}")]
    Truncated { what: &'static str },
    #[error("pgoutput message is empty")]
    Empty,
    #[error("insert into relation {oid} arrived before its Relation message")]
    UnknownRelation { oid: u32 },
    #[error("insert into {relation} has {found} columns, its Relation message {expected}")]
    ColumnCount {
        relation: String,
        found: usize,
        expected: usize,
    },
    #[error("unknown tuple column kind {kind:#04x}")]
    ColumnKind { kind: u8 },
    #[error("insert carries tuple kind {kind:#04x}, expected 'N'")]
    TupleKind { kind: u8 },
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        what: &'static str,
        #[source]
        source: std::string::FromUtf8Error,
    },
}

/// Decodes a stream of pgoutput messages, remembering Relation messages so inserts can be
/// mapped to column names. Postgres sends a Relation before the first change to a table in
/// each session and again after its schema changes, so one decoder lives per connection.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, Relation>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one message (the payload of an XLogData).
    pub fn decode(&mut self, data: &Bytes) -> Result<Message<'_>, DecodeError> {
        let mut reader = Reader::new(data.clone());
        let tag = reader.u8("message tag").map_err(|_| DecodeError::Empty)?;
        match tag {
            b'R' => {
                let relation = read_relation(&mut reader)?;
                let oid = relation.oid;
                let slot = match self.relations.entry(oid) {
                    std::collections::hash_map::Entry::Occupied(mut entry) => {
                        entry.insert(relation);
                        entry.into_mut()
                    }
                    std::collections::hash_map::Entry::Vacant(entry) => entry.insert(relation),
                };
                Ok(Message::Relation(slot))
            }
            b'I' => {
                let oid = reader.u32("relation oid")?;
                let kind = reader.u8("tuple kind")?;
                if kind != b'N' {
                    return Err(DecodeError::TupleKind { kind });
                }
                let relation = self
                    .relations
                    .get(&oid)
                    .ok_or(DecodeError::UnknownRelation { oid })?;
                let values = read_tuple(&mut reader)?;
                if values.len() != relation.columns.len() {
                    return Err(DecodeError::ColumnCount {
                        relation: format!("{}.{}", relation.namespace, relation.name),
                        found: values.len(),
                        expected: relation.columns.len(),
                    });
                }
                Ok(Message::Insert(Row { relation, values }))
            }
            other => Ok(Message::Other(other)),
        }
    }
}

fn read_relation(reader: &mut Reader) -> Result<Relation, DecodeError> {
    let oid = reader.u32("relation oid")?;
    let namespace = reader.string("relation namespace")?;
    let name = reader.string("relation name")?;
    let _replica_identity = reader.u8("replica identity")?;
    let count = reader.u16("column count")?;
    let mut columns = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let _flags = reader.u8("column flags")?;
        columns.push(reader.string("column name")?);
        let _type_oid = reader.u32("column type")?;
        let _type_modifier = reader.u32("column type modifier")?;
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        columns,
    })
}

fn read_tuple(reader: &mut Reader) -> Result<Vec<Value>, DecodeError> {
    let count = reader.u16("tuple column count")?;
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let value = match reader.u8("column kind")? {
            b'n' => Value::Null,
            b'u' => Value::UnchangedToast,
            b't' => {
                let len = reader.u32("column length")?;
                Value::Text(reader.bytes(len as usize, "column value")?)
            }
            b'b' => {
                let len = reader.u32("column length")?;
                Value::Binary(reader.bytes(len as usize, "column value")?)
            }
            kind => return Err(DecodeError::ColumnKind { kind }),
        };
        values.push(value);
    }
    Ok(values)
}

/// Big-endian reads over a message; values are zero-copy slices of it.
struct Reader {
    data: Bytes,
    pos: usize,
}

impl Reader {
    fn new(data: Bytes) -> Self {
        Self { data, pos: 0 }
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or(DecodeError::Truncated { what })?;
        self.pos += N;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.take::<1>(what).map(|[b]| b)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.take(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.take(what).map(u32::from_be_bytes)
    }

    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or(DecodeError::Truncated { what })?;
        let bytes = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(bytes)
    }

    /// A NUL-terminated string.
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated { what })?;
        let text = String::from_utf8(rest[..len].to_vec())
            .map_err(|source| DecodeError::NotUtf8 { what, source })?;
        self.pos += len + 1;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds pgoutput messages the way walsender writes them.
    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn tag(tag: u8) -> Self {
            Self(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn string(mut self, v: &str) -> Self {
            self.0.extend_from_slice(v.as_bytes());
            self.0.push(0);
            self
        }
        fn text(self, v: &[u8]) -> Self {
            let mut m = self.u8(b't').u32(v.len() as u32);
            m.0.extend_from_slice(v);
            m
        }
        fn done(self) -> Bytes {
            Bytes::from(self.0)
        }
    }

    const OID: u32 = 16_432;

    fn relation(columns: &[&str]) -> Bytes {
        let mut m = Msg::tag(b'R')
            .u32(OID)
            .string("public")
            .string("outbox")
            .u8(b'd')
            .u16(columns.len() as u16);
        for (i, name) in columns.iter().enumerate() {
            m = m.u8(u8::from(i == 0)).string(name).u32(25).u32(u32::MAX);
        }
        m.done()
    }

    fn insert_header(columns: u16) -> Msg {
        Msg::tag(b'I').u32(OID).u8(b'N').u16(columns)
    }

    #[test]
    fn a_relation_message_records_the_column_names() {
        let mut decoder = Decoder::new();
        let message = decoder.decode(&relation(&["event_id", "subject"]));
        let relation = match message {
            Ok(Message::Relation(relation)) => Some(relation.clone()),
            _ => None,
        };
        assert_eq!(
            relation,
            Some(Relation {
                oid: OID,
                namespace: "public".into(),
                name: "outbox".into(),
                columns: vec!["event_id".into(), "subject".into()],
            })
        );
    }

    #[test]
    fn an_insert_maps_columns_by_relation_name() {
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&relation(&["subject", "payload"])).is_ok());
        let insert = insert_header(2)
            .text(b"tally.like.added.1")
            .text(br#"{"a":  1 }"#)
            .done();
        let Ok(Message::Insert(row)) = decoder.decode(&insert) else {
            panic!("not an insert");
        };
        assert_eq!(row.relation.name, "outbox");
        assert_eq!(
            row.get("payload"),
            Some(&Value::Text(Bytes::from_static(br#"{"a":  1 }"#)))
        );
        assert_eq!(
            row.get("subject"),
            Some(&Value::Text(Bytes::from_static(b"tally.like.added.1")))
        );
        assert_eq!(row.get("missing"), None);
    }

    #[test]
    fn null_and_unchanged_toast_columns_are_told_apart() {
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&relation(&["a", "b", "c"])).is_ok());
        let insert = insert_header(3).u8(b'n').u8(b'u').text(b"").done();
        let Ok(Message::Insert(row)) = decoder.decode(&insert) else {
            panic!("not an insert");
        };
        assert_eq!(row.get("a"), Some(&Value::Null));
        assert_eq!(row.get("b"), Some(&Value::UnchangedToast));
        assert_eq!(row.get("c"), Some(&Value::Text(Bytes::new())));
    }

    #[test]
    fn a_later_relation_message_replaces_the_columns() {
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&relation(&["a", "b"])).is_ok());
        assert!(decoder.decode(&relation(&["b", "a"])).is_ok());
        let insert = insert_header(2).text(b"first").text(b"second").done();
        let Ok(Message::Insert(row)) = decoder.decode(&insert) else {
            panic!("not an insert");
        };
        assert_eq!(
            row.get("b"),
            Some(&Value::Text(Bytes::from_static(b"first")))
        );
    }

    #[test]
    fn an_insert_before_its_relation_is_an_error() {
        let mut decoder = Decoder::new();
        let insert = insert_header(1).text(b"x").done();
        assert!(matches!(
            decoder.decode(&insert),
            Err(DecodeError::UnknownRelation { oid: OID })
        ));
    }

    #[test]
    fn a_value_longer_than_the_message_is_truncated() {
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&relation(&["a"])).is_ok());
        let insert = insert_header(1).u8(b't').u32(10).u8(b'x').done();
        assert!(matches!(
            decoder.decode(&insert),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_column_count_other_than_the_relations_is_an_error() {
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&relation(&["a", "b"])).is_ok());
        let insert = insert_header(1).text(b"x").done();
        assert!(matches!(
            decoder.decode(&insert),
            Err(DecodeError::ColumnCount {
                found: 1,
                expected: 2,
                ..
            })
        ));
    }

    #[test]
    fn other_messages_are_passed_over_by_tag() {
        let mut decoder = Decoder::new();
        let origin = Msg::tag(b'O').u32(0).u32(1).string("elsewhere").done();
        assert!(matches!(decoder.decode(&origin), Ok(Message::Other(b'O'))));
        assert!(matches!(
            decoder.decode(&Bytes::new()),
            Err(DecodeError::Empty)
        ));
    }
}
