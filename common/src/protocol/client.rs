//! The `data` of each frame a client sends, with the bounds the AsyncAPI
//! document publishes (the gateway and the command path enforce them).

use crate::ids::{ConversationId, MessageId, UserId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{MAX_CLIENT_MSG_ID_CHARS, MAX_TEXT_CHARS, MessageType};
use crate::reactions::MAX_EMOJI_BYTES;

/// Most users in one `presence.subscribe`.
pub const MAX_PRESENCE_USERS: usize = 100;
/// Messages per conversation in a sync when the client does not say.
pub const DEFAULT_SYNC_LIMIT: u32 = 100;
/// Most messages per conversation in one sync result.
pub const MAX_SYNC_LIMIT: u32 = 500;
/// Most conversations listed in one `chat.sync`.
pub const MAX_SYNC_CONVERSATIONS: usize = 50;

/// `auth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthData {
    /// An access token from `/auth/login` or `/auth/register`.
    pub token: String,
}

/// `presence.ping` carries no data: send `{}` or leave `data` out (the
/// server ignores any fields given).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct PingData {}

/// `presence.subscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSubscribe {
    /// Users to report on (duplicates count once).
    #[schemars(length(min = 1, max = MAX_PRESENCE_USERS))]
    pub user_ids: Vec<UserId>,
}

/// `chat.message.send`: exactly one of `conversationId` and `receiverId`
/// (the conversation with that user, created if missing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_id: Option<UserId>,
    /// The idempotency key: a resend with the same key and content gets the same ack.
    #[schemars(length(min = 1, max = MAX_CLIENT_MSG_ID_CHARS), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub client_msg_id: String,
    /// 1 to 4000 characters after trimming; required for `text` messages, a caption for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TEXT_CHARS))]
    pub text: Option<String>,
    /// The message type; `text` when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MessageType>,
    /// For non-text messages: a JSON object of at most 16 KiB. `image`, `video`,
    /// `audio` and `file` messages name a completed upload (`{attachmentId}`,
    /// optional `width`, `height`, `durationMs`, `waveform`: docs/protocol.md,
    /// "Attachments"); `location` payloads are free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub payload: Option<Value>,
    /// The id of an earlier message of the same conversation this one quotes
    /// (refused with `reply_not_found` if the conversation holds no such live message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
}

/// `chat.message.edit`: the sender replaces the text of their own message
/// (within `DUET_EDIT_WINDOW_SECS` of sending). Answered by
/// `chat.message.updated` with `ref`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditIn {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// The edit's idempotency key: a resend with the same key gets the same answer.
    #[schemars(length(min = 1, max = MAX_CLIENT_MSG_ID_CHARS), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub client_edit_id: String,
    /// The new text: 1 to 4000 characters after trimming.
    #[schemars(length(min = 1, max = MAX_TEXT_CHARS))]
    pub text: String,
}

/// Whom a delete is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeleteScope {
    /// Unsend: the sender replaces the message with a tombstone for both members.
    Everyone,
    /// Hide the message from the caller's own history and sync only.
    Me,
}

/// `chat.message.delete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteIn {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub scope: DeleteScope,
}

/// `chat.reaction.set`: the caller's one reaction to a message; without `emoji`, removes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReactionIn {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// Exactly one emoji (with its skin tone or other modifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_EMOJI_BYTES))]
    pub emoji: Option<String>,
}

/// `chat.message.delivered` / `chat.message.read` from a client: cumulative up to `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptIn {
    pub conversation_id: ConversationId,
    #[schemars(range(min = 0))]
    pub seq: i64,
}

/// Whether a user is typing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TypingState {
    Start,
    Stop,
}

/// `chat.typing` from a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypingIn {
    pub conversation_id: ConversationId,
    pub state: TypingState,
}

/// `chat.sync`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncIn {
    /// Conversations to sync, each from its cursor; absent: every conversation
    /// with messages past the caller's delivered marker, from that marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SYNC_CONVERSATIONS))]
    pub conversations: Option<Vec<SyncCursor>>,
    /// Messages per conversation (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_SYNC_LIMIT))]
    pub limit: Option<u32>,
}

/// One conversation of a `chat.sync`, from after `afterSeq` (new
/// messages) and, when given, after `afterChange` (changes to the messages
/// the device already holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncCursor {
    pub conversation_id: ConversationId,
    #[schemars(range(min = 0))]
    pub after_seq: i64,
    /// The `lastChange` of this conversation's previous sync result: the
    /// result then lists the changes since (`changes`, `hidden`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub after_change: Option<i64>,
}
