//! The `data` of each frame the server sends. Optional fields are omitted
//! when absent, never `null`.

use crate::ids::{ConversationId, MessageId, SessionId, UserId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::Message;
use crate::error::ErrorCode;

pub use super::client::TypingState;

/// `auth.ok`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthOk {
    pub user_id: UserId,
    pub session_id: SessionId,
    /// Send `presence.ping` this often (with jitter).
    pub heartbeat_interval_ms: u64,
}

/// `presence.pong`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// The id of the ping this answers.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `chat.message.ack`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// The id of the send this answers.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub client_msg_id: String,
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    #[schemars(range(min = 1))]
    pub seq: i64,
    #[serde(with = "crate::domain::rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub created_at: DateTime<Utc>,
}

/// `chat.message.new`.
// Generic so the fan-out can encode a borrowed message:
// `NewMessageData<&Message>` writes the same JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "NewMessageData")]
pub struct NewMessageData<M = Message> {
    pub message: M,
}

/// `chat.message.delivered` / `chat.message.read` as the server forwards them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptOut {
    pub conversation_id: ConversationId,
    /// The user's marker: everything up to here.
    #[schemars(range(min = 0))]
    pub seq: i64,
    /// Whose marker moved.
    pub user_id: UserId,
    #[serde(with = "crate::domain::rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub at: DateTime<Utc>,
}

/// `chat.typing` as forwarded to the peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypingOut {
    pub conversation_id: ConversationId,
    /// Who is typing.
    pub user_id: UserId,
    pub state: TypingState,
}

/// A user's presence; `unknown` when Redis cannot tell or it is not
/// visible to the receiver (`duet_common::privacy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
    Unknown,
}

/// `presence.update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceUpdate {
    /// The id of the `presence.subscribe` this answers; absent on a push.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub user_id: UserId,
    pub status: PresenceStatus,
    /// When the user was last online; only with `offline`, and only when known.
    #[serde(with = "crate::domain::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// What happened to a message in a `chat.message.updated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The sender edited the text.
    Edited,
    /// The sender unsent it: `message` is a tombstone.
    Deleted,
    /// A member set, changed or removed their reaction.
    Reaction,
}

/// `chat.message.updated`: a message as it is after a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageUpdated {
    /// The id of the frame this answers, for the session that made the change.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub change: ChangeKind,
    /// The whole message in its new state (replace the copy you hold).
    pub message: Message,
}

/// `chat.message.hidden`: the caller deleted a message for themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageHiddenData {
    /// The id of the `chat.message.delete` this answers, for the session that sent it.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// The conversation's change position of the hide.
    #[schemars(range(min = 1))]
    pub change_seq: i64,
}

/// One conversation of a `chat.sync.result`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncConversation {
    pub conversation_id: ConversationId,
    /// New messages (`seq > afterSeq`), in seq order, each in its current
    /// state; never the ones the caller hid.
    pub messages: Vec<Message>,
    /// More messages follow: sync this conversation again with `afterSeq` = the last seq returned.
    pub has_more: bool,
    /// The change cursor to keep: send it as `afterChange` next time (with
    /// `hasMoreChanges`, the position of the last change returned).
    #[schemars(range(min = 0))]
    pub last_change: i64,
    /// Only when `afterChange` was given: the messages the device already
    /// holds (`seq <= afterSeq`) that changed after `afterChange`, in their
    /// current state, in change order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Message>>,
    /// Only when `afterChange` was given: ids of the messages the caller
    /// hid (deleted for themselves) after `afterChange`: drop them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<MessageId>>,
    /// More changes follow: sync again with `afterChange` = `lastChange`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_more_changes: bool,
    #[schemars(range(min = 0))]
    pub peer_last_delivered_seq: i64,
    #[schemars(range(min = 0))]
    pub peer_last_read_seq: i64,
    /// Messages to the caller past their read marker.
    #[schemars(range(min = 0))]
    pub unread_count: i64,
}

/// `chat.sync.result`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    /// The id of the `chat.sync` this answers.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub conversations: Vec<SyncConversation>,
    /// More conversations have news than fit in one result: sync again.
    pub more_conversations: bool,
}

/// `error`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// The id of the refused frame, when it had one that could be read.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Stable machine code (the same catalogue as REST).
    pub code: ErrorCode,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// With `rate_limited`: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
