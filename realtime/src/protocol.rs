//! The WebSocket protocol: the frame envelope, every event's `data` shape,
//! and the list of event types (the public contract, mirrored in
//! `docs/protocol.md` and `openapi/asyncapi.yaml`).
//!
//! Every frame is a JSON text frame `{"type", "id", "ts", "data"}`. Client
//! frames carry their own `id`; server replies carry it back as `data.ref`.
//! Types derive both `Serialize` and `Deserialize` so tests (and the AsyncAPI
//! check) can parse what the gateway writes into the gateway's own types.

use chrono::{DateTime, Utc};
use duet_common::domain::{Message, MessageType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Event types a client may send.
pub const CLIENT_EVENTS: &[&str] = &[
    "auth",
    "presence.ping",
    "presence.subscribe",
    "chat.message.send",
    "chat.message.delivered",
    "chat.message.read",
    "chat.typing",
    "chat.sync",
];

/// Event types the server sends.
pub const SERVER_EVENTS: &[&str] = &[
    "auth.ok",
    "presence.pong",
    "presence.update",
    "chat.message.ack",
    "chat.message.new",
    "chat.message.delivered",
    "chat.message.read",
    "chat.typing",
    "chat.sync.result",
    "error",
];

/// Longest client frame id.
pub const MAX_FRAME_ID_CHARS: usize = 64;

/// The envelope of a client frame, before its `data` is interpreted.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub ts: Option<i64>,
    #[serde(default)]
    pub data: Option<Value>,
}

// ---- client → server ----

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthData {
    pub token: String,
}

/// `presence.ping` carries no data; anything given is ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PingData {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendData {
    #[serde(default)]
    pub conversation_id: Option<Uuid>,
    #[serde(default)]
    pub receiver_id: Option<Uuid>,
    pub client_msg_id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<MessageType>,
    #[serde(default)]
    pub payload: Option<Value>,
}

/// `chat.message.delivered` / `chat.message.read` from a client: cumulative up to `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptIn {
    pub conversation_id: Uuid,
    pub seq: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypingState {
    Start,
    Stop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingIn {
    pub conversation_id: Uuid,
    pub state: TypingState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSubscribe {
    pub user_ids: Vec<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCursor {
    pub conversation_id: Uuid,
    pub after_seq: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncIn {
    #[serde(default)]
    pub conversations: Option<Vec<SyncCursor>>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A client frame's `data`, interpreted by type.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    Auth(AuthData),
    Ping(PingData),
    PresenceSubscribe(PresenceSubscribe),
    Send(SendData),
    Delivered(ReceiptIn),
    Read(ReceiptIn),
    Typing(TypingIn),
    Sync(SyncIn),
}

/// Why a client frame could not be interpreted.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("invalid `data` for `{kind}`: {cause}")]
    InvalidData { kind: String, cause: serde_json::Error },
}

impl ClientEvent {
    /// The event type, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientEvent::Auth(_) => "auth",
            ClientEvent::Ping(_) => "presence.ping",
            ClientEvent::PresenceSubscribe(_) => "presence.subscribe",
            ClientEvent::Send(_) => "chat.message.send",
            ClientEvent::Delivered(_) => "chat.message.delivered",
            ClientEvent::Read(_) => "chat.message.read",
            ClientEvent::Typing(_) => "chat.typing",
            ClientEvent::Sync(_) => "chat.sync",
        }
    }

    /// Interprets `data` for a client frame of type `kind`. Absent data reads as `{}`.
    pub fn parse(kind: &str, data: Option<Value>) -> Result<Self, ParseError> {
        let data = data.filter(|d| !d.is_null()).unwrap_or_else(|| Value::Object(Default::default()));
        fn typed<T: for<'de> Deserialize<'de>>(kind: &str, data: Value) -> Result<T, ParseError> {
            serde_json::from_value(data).map_err(|cause| ParseError::InvalidData { kind: kind.to_owned(), cause })
        }
        Ok(match kind {
            "auth" => ClientEvent::Auth(typed(kind, data)?),
            "presence.ping" => ClientEvent::Ping(typed(kind, data)?),
            "presence.subscribe" => ClientEvent::PresenceSubscribe(typed(kind, data)?),
            "chat.message.send" => ClientEvent::Send(typed(kind, data)?),
            "chat.message.delivered" => ClientEvent::Delivered(typed(kind, data)?),
            "chat.message.read" => ClientEvent::Read(typed(kind, data)?),
            "chat.typing" => ClientEvent::Typing(typed(kind, data)?),
            "chat.sync" => ClientEvent::Sync(typed(kind, data)?),
            other => return Err(ParseError::UnknownType(other.to_owned())),
        })
    }
}

// ---- server → client ----

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthOk {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub heartbeat_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub client_msg_id: String,
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    #[serde(with = "duet_common::domain::rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// `chat.message.new`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub message: Message,
}

/// `chat.message.delivered` / `chat.message.read` as the server forwards them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptOut {
    pub conversation_id: Uuid,
    pub seq: i64,
    pub user_id: Uuid,
    #[serde(with = "duet_common::domain::rfc3339")]
    pub at: DateTime<Utc>,
}

/// `chat.typing` as forwarded to the peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingOut {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    pub state: TypingState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceUpdate {
    /// Set when this answers a `presence.subscribe`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub user_id: Uuid,
    pub status: PresenceStatus,
    #[serde(with = "duet_common::domain::rfc3339::option", default)]
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncConversation {
    pub conversation_id: Uuid,
    pub messages: Vec<Message>,
    pub has_more: bool,
    pub peer_last_delivered_seq: i64,
    pub peer_last_read_seq: i64,
    pub unread_count: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub conversations: Vec<SyncConversation>,
    /// More conversations have news than fit in one result: sync again.
    pub more_conversations: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub code: duet_common::error::ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A server frame's `data`, interpreted by type (for tests and the AsyncAPI check).
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    AuthOk(AuthOk),
    Pong(Pong),
    PresenceUpdate(PresenceUpdate),
    Ack(Ack),
    New(Box<NewMessage>),
    Delivered(ReceiptOut),
    Read(ReceiptOut),
    Typing(TypingOut),
    SyncResult(SyncResult),
    Error(ErrorData),
}

impl ServerEvent {
    pub fn parse(kind: &str, data: Value) -> Result<Self, ParseError> {
        fn typed<T: for<'de> Deserialize<'de>>(kind: &str, data: Value) -> Result<T, ParseError> {
            serde_json::from_value(data).map_err(|cause| ParseError::InvalidData { kind: kind.to_owned(), cause })
        }
        Ok(match kind {
            "auth.ok" => ServerEvent::AuthOk(typed(kind, data)?),
            "presence.pong" => ServerEvent::Pong(typed(kind, data)?),
            "presence.update" => ServerEvent::PresenceUpdate(typed(kind, data)?),
            "chat.message.ack" => ServerEvent::Ack(typed(kind, data)?),
            "chat.message.new" => ServerEvent::New(Box::new(typed(kind, data)?)),
            "chat.message.delivered" => ServerEvent::Delivered(typed(kind, data)?),
            "chat.message.read" => ServerEvent::Read(typed(kind, data)?),
            "chat.typing" => ServerEvent::Typing(typed(kind, data)?),
            "chat.sync.result" => ServerEvent::SyncResult(typed(kind, data)?),
            "error" => ServerEvent::Error(typed(kind, data)?),
            other => return Err(ParseError::UnknownType(other.to_owned())),
        })
    }
}

/// Encodes a server frame.
pub fn frame<T: Serialize>(kind: &str, data: T) -> String {
    duet_common::live::Frame::new(kind, data).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_client_event_parses_and_others_do_not() {
        for kind in CLIENT_EVENTS {
            let err = ClientEvent::parse(kind, Some(serde_json::json!({"bogus": []}))).err();
            assert!(!matches!(err, Some(ParseError::UnknownType(_))), "{kind} is listed but not handled");
        }
        assert!(matches!(ClientEvent::parse("chat.nope", None), Err(ParseError::UnknownType(_))));
        assert_eq!(ClientEvent::parse("presence.ping", None).unwrap(), ClientEvent::Ping(PingData {}));
    }
}
