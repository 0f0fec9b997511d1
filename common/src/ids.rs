//! Typed ids: a user's id and a conversation's id are both UUIDs, and the
//! compiler should still tell them apart.
//!
//! Each is a UUID on the wire (serde, the API documents) and in PostgreSQL
//! (sqlx), with nothing added: the types exist for the compiler only.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use poem_openapi::registry::MetaSchemaRef;
use poem_openapi::types::{ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7: new rows go to the end of indexes).
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(s).map($name)
            }
        }

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Uuid;
            type RawElementValueType = Uuid;

            fn name() -> Cow<'static, str> {
                Uuid::name()
            }

            fn schema_ref() -> MetaSchemaRef {
                Uuid::schema_ref()
            }

            fn as_raw_value(&self) -> Option<&Uuid> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Uuid> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
                Uuid::parse_from_json(value).map($name).map_err(poem_openapi::types::ParseError::propagate)
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Uuid::parse_from_parameter(value).map($name).map_err(poem_openapi::types::ParseError::propagate)
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<serde_json::Value> {
                self.0.to_json()
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                Uuid::schema_name()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                Uuid::json_schema(generator)
            }
        }
    )+};
}

ids! {
    /// A user (an account).
    UserId;
    /// A 1:1 conversation.
    ConversationId;
    /// A stored message.
    MessageId;
    /// A push device registration.
    DeviceId;
    /// One WebSocket session of a user.
    SessionId;
    /// One sign-in of a user (a family of rotating refresh tokens): the `sid` of its access tokens.
    AuthSessionId;
    /// A file in object storage, uploaded (or being uploaded) into a conversation.
    AttachmentId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bare_uuids_on_the_wire() {
        let id = UserId::new();
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::to_value(id.0).unwrap());
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert_eq!(ConversationId::to_json(&ConversationId(id.0)), id.0.to_json());
    }
}
