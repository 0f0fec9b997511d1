//! A JSON string field that is only ever a JSON string.
//!
//! poem-openapi reads a `String` field from a JSON number or boolean too
//! (`"token": false` is stored as `"false"`), so a request the document
//! calls invalid is accepted. Request bodies use [`JsonString`] instead: it
//! has `String`'s schema and validators and refuses anything but a string.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonString(pub String);

impl JsonString {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl AsRef<str> for JsonString {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for JsonString {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Type for JsonString {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for JsonString {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(text) => Ok(JsonString(text)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for JsonString {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strings_are_strings() {
        assert_eq!(JsonString::parse_from_json(Some(Value::String("x".into()))).unwrap(), JsonString("x".into()));
        for other in [serde_json::json!(1), serde_json::json!(false), Value::Null, serde_json::json!(["x"])] {
            assert!(JsonString::parse_from_json(Some(other.clone())).is_err(), "{other}");
        }
    }
}
