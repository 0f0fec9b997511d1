//! The WebSocket protocol, in one place: every frame a client sends
//! ([`ClientEvent`]) and every frame the server sends ([`ServerEvent`]),
//! each a variant carrying its typed `data`, and the envelope around them.
//!
//! A frame is a JSON text frame `{"type", "id", "ts", "data"}`: the enums
//! are adjacently tagged (`type` + `data`), and [`ClientFrame`] /
//! [`ServerFrame`] add the envelope fields. Client frames carry their own
//! `id`; server replies carry it back as `data.ref`; server frames carry no
//! `id`. The frame-type strings are spelled only in the tables below; code
//! elsewhere names a frame by its variant or its kind ([`ClientKind`],
//! [`ServerKind`]).
//!
//! The same tables drive the AsyncAPI document ([`asyncapi`]), and
//! `docs/protocol.md` is checked against them. Wire rule: a field that can
//! be absent is omitted, never `null`.

pub mod asyncapi;
mod client;
mod examples;
mod server;

pub use client::*;
pub use server::*;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Message;

/// Declares a direction's event enum, its kind enum (the frame types alone)
/// and the table the gateway, the clients and the AsyncAPI document read.
macro_rules! events {
    (
        $(#[$meta:meta])*
        pub enum $event:ident / $kind:ident {
            $( $variant:ident($data:ty) = $wire:literal, $summary:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum $event {
            $( #[serde(rename = $wire)] $variant($data), )+
        }

        /// The frame types of one direction, without their data.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $kind {
            $( #[serde(rename = $wire)] $variant, )+
        }

        impl $kind {
            /// Every frame type of this direction, in protocol order.
            pub const ALL: &'static [$kind] = &[$($kind::$variant),+];

            /// The frame type as on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($kind::$variant => $wire,)+ }
            }

            /// The kind of a wire frame type; `None` if there is no such type.
            pub fn from_wire(kind: &str) -> Option<Self> {
                match kind { $($wire => Some($kind::$variant),)+ _ => None }
            }

            /// The variant's name, which names its AsyncAPI message and schema.
            pub fn name(self) -> &'static str {
                match self { $($kind::$variant => stringify!($variant),)+ }
            }

            /// What the frame means, for the AsyncAPI document.
            pub fn summary(self) -> &'static str {
                match self { $($kind::$variant => $summary,)+ }
            }

            /// The schema of the frame's `data`.
            pub(crate) fn data_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $($kind::$variant => generator.subschema_for::<$data>(),)+ }
            }
        }

        impl $event {
            pub fn kind(&self) -> $kind {
                match self { $($event::$variant(_) => $kind::$variant,)+ }
            }

            /// Interprets `data` as the data of a `kind` frame.
            pub fn from_data(kind: $kind, data: Value) -> Result<Self, serde_json::Error> {
                match kind { $($kind::$variant => serde_json::from_value(data).map($event::$variant),)+ }
            }
        }
    };
}

events! {
    /// A frame a client sends.
    pub enum ClientEvent / ClientKind {
        Auth(AuthData) = "auth",
            "Authenticate (when the upgrade had no Bearer header). Answered by `auth.ok`, or `error unauthorized` then close 4401.";
        Ping(PingData) = "presence.ping",
            "Heartbeat every `heartbeatIntervalMs` (with jitter); refreshes presence. Answered by `presence.pong`.";
        PresenceSubscribe(PresenceSubscribe) = "presence.subscribe",
            "The current status of users one shares a conversation with; answered by one `presence.update` per user (with `ref`; `unknown` for a user whose presence you may not see), and `error not_a_peer` if some are not peers.";
        Send(SendData) = "chat.message.send",
            "Send a message. Answered by `chat.message.ack` once durable; a resend with the same `clientMsgId` gets the same ack.";
        Delivered(ReceiptIn) = "chat.message.delivered",
            "Everything up to `seq` reached this device (cumulative). No reply on success; a marker that moved is forwarded to both users' sessions. The server reads on while receipts commit, so a refused one's `error` (with its `ref`) may come after answers to later frames.";
        Read(ReceiptIn) = "chat.message.read",
            "Everything up to `seq` was read (cumulative; implies delivered). Answered like `chat.message.delivered`.";
        Typing(TypingIn) = "chat.typing",
            "Typing started or stopped; forwarded to the peer, never stored. Refresh a `start` every few seconds while typing.";
        Sync(SyncIn) = "chat.sync",
            "What the client lacks. Without `conversations`, every conversation with messages past the caller's delivered marker. Answered by `chat.sync.result`.";
        Edit(EditIn) = "chat.message.edit",
            "The sender edits the text of their own message within the edit window. Answered by `chat.message.updated` (with `ref`); a resend with the same `clientEditId` gets the same answer.";
        Delete(DeleteIn) = "chat.message.delete",
            "`everyone`: the sender unsends their message (a tombstone for both members), answered by `chat.message.updated`. `me`: the caller hides it from their own history, answered by `chat.message.hidden`. Both with `ref`; repeating either is harmless.";
        ReactionSet(ReactionIn) = "chat.reaction.set",
            "Set, change or (without `emoji`) remove the caller's one reaction to a message. Answered by `chat.message.updated` (with `ref`).";
    }
}

events! {
    /// A frame the server sends.
    pub enum ServerEvent / ServerKind {
        AuthOk(AuthOk) = "auth.ok",
            "The connection is authenticated; send `presence.ping` every `heartbeatIntervalMs`, then `chat.sync`.";
        Pong(Pong) = "presence.pong",
            "Answers `presence.ping`.";
        PresenceUpdate(PresenceUpdate) = "presence.update",
            "A peer came online or went offline (pushed to the user's conversation peers who are online and may see it), or the answer to `presence.subscribe` (with `ref`). `unknown` when Redis cannot tell or the peer's presence is not visible to you (their privacy setting, yours, or a block); pushed again when that changes.";
        Ack(Ack) = "chat.message.ack",
            "The message of frame `ref` is durable (committed to PostgreSQL).";
        Message(NewMessageData) = "chat.message.new",
            "A message, to every session of the receiver and the sender's other sessions, in seq order per conversation. A repeat carries the same `id` and `seq`; clients keep one copy per `id`.";
        Delivered(ReceiptOut) = "chat.message.delivered",
            "`userId` has received everything up to `seq`; sent to both members' sessions.";
        Read(ReceiptOut) = "chat.message.read",
            "`userId` has read everything up to `seq`; sent to both members' sessions.";
        Typing(TypingOut) = "chat.typing",
            "The peer started or stopped typing. A `start` not refreshed within `DUET_TYPING_TTL_SECS` (6 s) is followed by a `stop` from the server.";
        SyncResult(SyncResult) = "chat.sync.result",
            "Answers `chat.sync`.";
        MessageUpdated(MessageUpdated) = "chat.message.updated",
            "A message was edited, unsent (a tombstone) or its reactions changed: the whole message in its new state, to every session of both members (the session that made the change gets it with `ref`, as its answer).";
        MessageHidden(MessageHiddenData) = "chat.message.hidden",
            "The caller deleted a message for themselves: to the caller's sessions only (with `ref` for the one that asked).";
        Error(ErrorData) = "error",
            "A refused frame (`ref` names it when it had an id). The connection stays usable unless a close follows.";
    }
}

/// Longest client frame id, in characters.
pub const MAX_FRAME_ID_CHARS: usize = 64;

/// The envelope of a client frame as the gateway reads it, before `data`
/// is interpreted by type (so each failure gets its own error code).
#[derive(Debug, Deserialize)]
pub struct RawClientFrame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub ts: Option<i64>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// Why a client frame's type and data could not be interpreted.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("invalid `data` for `{kind}`: {cause}")]
    InvalidData { kind: &'static str, cause: serde_json::Error },
}

impl ClientEvent {
    /// Interprets a client frame of type `kind`. Absent or `null` data reads as `{}`.
    pub fn parse(kind: &str, data: Option<Value>) -> Result<Self, ParseError> {
        let kind = ClientKind::from_wire(kind).ok_or_else(|| ParseError::UnknownType(kind.to_owned()))?;
        let data = data.filter(|d| !d.is_null()).unwrap_or_else(|| Value::Object(Default::default()));
        ClientEvent::from_data(kind, data).map_err(|cause| ParseError::InvalidData { kind: kind.as_str(), cause })
    }
}

/// A whole client frame: what clients (the bench, tests) send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// The client's frame id, 1 to [`MAX_FRAME_ID_CHARS`] characters; replies name it as `data.ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Client time, unix ms (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    #[serde(flatten)]
    pub event: ClientEvent,
}

impl ClientFrame {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

/// A whole server frame, as clients decode it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// Server time, unix ms.
    pub ts: i64,
    #[serde(flatten)]
    pub event: ServerEvent,
}

impl ServerEvent {
    /// The frame, stamped now: `{"type","ts","data"}`.
    pub fn encode(&self) -> String {
        match self {
            ServerEvent::AuthOk(data) => wire(self.kind(), data),
            ServerEvent::Pong(data) => wire(self.kind(), data),
            ServerEvent::PresenceUpdate(data) => wire(self.kind(), data),
            ServerEvent::Ack(data) => wire(self.kind(), data),
            ServerEvent::Message(data) => wire(self.kind(), data),
            ServerEvent::Delivered(data) => wire(self.kind(), data),
            ServerEvent::Read(data) => wire(self.kind(), data),
            ServerEvent::Typing(data) => wire(self.kind(), data),
            ServerEvent::SyncResult(data) => wire(self.kind(), data),
            ServerEvent::MessageUpdated(data) => wire(self.kind(), data),
            ServerEvent::MessageHidden(data) => wire(self.kind(), data),
            ServerEvent::Error(data) => wire(self.kind(), data),
        }
    }
}

/// `chat.message.new` for `message`, without copying it: the fan-out
/// encodes each message once, on the hot path.
pub fn message_frame(message: &Message) -> String {
    wire(ServerKind::Message, &NewMessageData { message })
}

/// Writes a server frame with the fields in wire order, stamped now.
fn wire<T: Serialize>(kind: ServerKind, data: &T) -> String {
    #[derive(Serialize)]
    struct Wire<'a, T> {
        #[serde(rename = "type")]
        kind: ServerKind,
        ts: i64,
        data: &'a T,
    }
    serde_json::to_string(&Wire { kind, ts: Utc::now().timestamp_millis(), data }).expect("frames always serialize")
}

#[cfg(test)]
mod tests;
