//! A JSON string field that takes only JSON strings.
//!
//! poem-openapi reads a `String` field from a JSON number or boolean too (`7` becomes `"7"`),
//! so `{"body": 7}` would be stored as a comment. The spec says `type: string`; this type
//! makes the server say the same, refusing anything else with a 400.

use std::borrow::Cow;

use poem_openapi::registry::MetaSchemaRef;
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

/// A string read only from a JSON string; its schema is `String`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictString(pub String);

impl Type for StrictString {
    const IS_REQUIRED: bool = true;

    type RawValueType = String;

    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.0))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for StrictString {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(value) => Ok(Self(value)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for StrictString {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl From<&str> for StrictString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_string_is_a_string() {
        let parse = |value: Value| StrictString::parse_from_json(Some(value)).ok();
        assert_eq!(parse(Value::from("7")), Some(StrictString::from("7")));
        assert_eq!(parse(Value::from(7)), None);
        assert_eq!(parse(Value::from(true)), None);
        assert_eq!(parse(Value::Null), None);
    }
}
