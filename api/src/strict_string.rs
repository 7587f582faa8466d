//! A JSON string field that takes only JSON strings.
//!
//! poem-openapi reads a `String` field from a JSON number or boolean too (`7` becomes `"7"`),
//! so `{"body": 7}` would be stored as a comment. The spec says `type: string`; this type
//! makes the server say the same, refusing anything else with a 400.

/// Implements poem-openapi's `Type`, `ParseFromJSON` and `ToJSON` (and `From<&str>`) for a
/// newtype over `String` that is read only from a JSON string, its schema given by
/// `$schema`: every such field shares these impls and differs only in what it declares.
macro_rules! json_string_type {
    ($name:ident, $schema:expr) => {
        impl ::poem_openapi::types::Type for $name {
            const IS_REQUIRED: bool = true;

            type RawValueType = String;

            type RawElementValueType = String;

            fn name() -> ::std::borrow::Cow<'static, str> {
                <String as ::poem_openapi::types::Type>::name()
            }

            fn schema_ref() -> ::poem_openapi::registry::MetaSchemaRef {
                $schema
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

        impl ::poem_openapi::types::ParseFromJSON for $name {
            fn parse_from_json(
                value: Option<::serde_json::Value>,
            ) -> ::poem_openapi::types::ParseResult<Self> {
                match value.unwrap_or_default() {
                    ::serde_json::Value::String(value) => Ok(Self(value)),
                    other => Err(::poem_openapi::types::ParseError::expected_type(other)),
                }
            }
        }

        impl ::poem_openapi::types::ToJSON for $name {
            fn to_json(&self) -> Option<::serde_json::Value> {
                Some(::serde_json::Value::String(self.0.clone()))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}
pub(crate) use json_string_type;

/// A string read only from a JSON string; its schema is `String`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictString(pub String);

json_string_type!(
    StrictString,
    <String as ::poem_openapi::types::Type>::schema_ref()
);

#[cfg(test)]
mod tests {
    use poem_openapi::types::ParseFromJSON;
    use serde_json::Value;

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
