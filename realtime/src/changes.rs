//! The message-change frames of a session (`chat.message.edit`,
//! `chat.message.delete`, `chat.reaction.set`): each goes through the same
//! command handler as its REST operation, and its answer is the change's
//! own frame (`chat.message.updated` or `chat.message.hidden`) carrying the
//! frame's `ref`. The fan-out skips this session (it has its answer) and
//! tells every other session of the members.

use duet_command_api::{Commands, EditRequest};
use duet_common::ApiError;
use duet_common::protocol::{DeleteIn, DeleteScope, EditIn, MessageHiddenData, MessageUpdated, ReactionIn, ServerEvent};

use crate::session::Session;

/// A change a client asked for.
pub enum Change {
    Edit(EditIn),
    Delete(DeleteIn),
    Reaction(ReactionIn),
}

impl From<EditIn> for Change {
    fn from(data: EditIn) -> Self {
        Change::Edit(data)
    }
}

impl From<DeleteIn> for Change {
    fn from(data: DeleteIn) -> Self {
        Change::Delete(data)
    }
}

impl From<ReactionIn> for Change {
    fn from(data: ReactionIn) -> Self {
        Change::Reaction(data)
    }
}

/// Applies `change` for the session's user; returns the answer frame (with `ref`).
pub async fn apply(commands: &Commands, session: &Session, change: Change, r: Option<&str>) -> Result<String, ApiError> {
    let (user, origin, reference) = (session.user_id, Some(session.id), r.map(str::to_owned));
    let changed = match change {
        Change::Edit(data) => {
            let request = EditRequest {
                conversation_id: data.conversation_id,
                message_id: data.message_id,
                client_edit_id: data.client_edit_id,
                text: data.text,
            };
            commands.edit(user, origin, request).await?
        }
        Change::Delete(DeleteIn { conversation_id, message_id, scope: DeleteScope::Everyone }) => {
            commands.unsend(user, origin, conversation_id, message_id).await?
        }
        Change::Delete(DeleteIn { conversation_id, message_id, scope: DeleteScope::Me }) => {
            let hidden = commands.hide(user, origin, conversation_id, message_id).await?;
            let data = MessageHiddenData { reference, conversation_id, message_id, change_seq: hidden.change_seq };
            return Ok(ServerEvent::MessageHidden(data).encode());
        }
        Change::Reaction(data) => commands.react(user, origin, data.conversation_id, data.message_id, data.emoji.as_deref()).await?,
    };
    Ok(ServerEvent::MessageUpdated(MessageUpdated { reference, change: changed.change, message: changed.message }).encode())
}
