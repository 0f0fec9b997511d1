//! Domain events, written to the outbox in the same transaction as the
//! change they describe. Past tense; each carries its schema version.
//!
//! The projector (read models) and the push jobs consume them; nothing
//! reads them back into the write side.

use crate::ids::{ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Message;

/// Version of the event payloads below; bump on an incompatible change.
pub const EVENT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DomainEvent {
    /// A 1:1 conversation was created between two users.
    ConversationCreated { conversation_id: ConversationId, user_lo: UserId, user_hi: UserId, at: DateTime<Utc> },
    /// A message was appended at `message.seq`.
    MessageAppended { message: Message },
    /// `user_id` has received everything up to `seq` in the conversation.
    DeliveredUpTo { conversation_id: ConversationId, user_id: UserId, seq: i64, at: DateTime<Utc> },
    /// `user_id` has read everything up to `seq` in the conversation.
    ReadUpTo { conversation_id: ConversationId, user_id: UserId, seq: i64, at: DateTime<Utc> },
    /// The sender edited the text of `message` (as it is after the edit).
    MessageEdited { message: Message },
    /// The sender unsent a message: `message` is its tombstone (no content).
    MessageDeleted { message: Message },
    /// `user_id` deleted the message at `seq` for themselves only.
    MessageHidden { conversation_id: ConversationId, user_id: UserId, message_id: MessageId, seq: i64, change_seq: i64 },
    /// `user_id` set (`emoji`) or removed (no `emoji`) their reaction to a
    /// message. Carries no content, so an unsend has nothing to erase here.
    ReactionChanged {
        conversation_id: ConversationId,
        message_id: MessageId,
        user_id: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emoji: Option<String>,
        change_seq: i64,
    },
}

impl DomainEvent {
    /// The outbox `event_type` column.
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::ConversationCreated { .. } => "conversation_created",
            DomainEvent::MessageAppended { .. } => "message_appended",
            DomainEvent::DeliveredUpTo { .. } => "delivered_up_to",
            DomainEvent::ReadUpTo { .. } => "read_up_to",
            DomainEvent::MessageEdited { .. } => "message_edited",
            DomainEvent::MessageDeleted { .. } => "message_deleted",
            DomainEvent::MessageHidden { .. } => "message_hidden",
            DomainEvent::ReactionChanged { .. } => "reaction_changed",
        }
    }

    pub fn conversation_id(&self) -> ConversationId {
        match self {
            DomainEvent::ConversationCreated { conversation_id, .. }
            | DomainEvent::DeliveredUpTo { conversation_id, .. }
            | DomainEvent::ReadUpTo { conversation_id, .. }
            | DomainEvent::MessageHidden { conversation_id, .. }
            | DomainEvent::ReactionChanged { conversation_id, .. } => *conversation_id,
            DomainEvent::MessageAppended { message } | DomainEvent::MessageEdited { message } | DomainEvent::MessageDeleted { message } => {
                message.conversation_id
            }
        }
    }
}

/// An event as stored in the outbox: the event plus its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub event: DomainEvent,
}

impl From<DomainEvent> for Envelope {
    fn from(event: DomainEvent) -> Self {
        Envelope { version: EVENT_VERSION, event }
    }
}
