//! Changes to sent messages over REST: edit, unsend, delete for me and
//! reactions (the rules: `crate::changes` and `crate::reactions`). Every
//! change is also told live to the members' WebSocket sessions.

use duet_common::auth::BearerAuth;
use duet_common::domain::{MAX_CLIENT_MSG_ID_CHARS, MAX_TEXT_CHARS, Message};
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::{ConversationId, MessageId};
use duet_common::json_string::JsonString;
use duet_common::reactions::MAX_EMOJI_BYTES;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::{Commands, EditRequest};

pub struct MessageChangesApi(pub Commands);

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct EditMessageRequest {
    /// The new text: 1 to 4000 characters after trimming.
    #[oai(validator(min_length = 1, max_length = 4000))]
    text: JsonString,
    /// The edit's idempotency key: 1 to 64 characters of `[A-Za-z0-9_-]`.
    /// A retry with the same key gets the same answer.
    #[oai(validator(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    client_edit_id: JsonString,
}

#[derive(Object)]
struct ReactionRequest {
    /// Exactly one emoji (with its skin tone or other modifiers).
    #[oai(validator(min_length = 1, max_length = 64))]
    emoji: String,
}

#[derive(ApiResponse)]
enum MessageResponse {
    /// The message in its new state.
    #[oai(status = 200)]
    Ok(Json<Message>),
}

#[derive(ApiResponse)]
enum HideResponse {
    /// Hidden from the caller's history, search and sync (the peer still has it).
    #[oai(status = 204)]
    Hidden,
}

// The published bounds are the domain's.
const _: () = assert!(MAX_TEXT_CHARS == 4000 && MAX_CLIENT_MSG_ID_CHARS == 64 && MAX_EMOJI_BYTES == 64);

const MEMBERSHIP: &[ErrorCode] = &[ErrorCode::ConversationNotFound, ErrorCode::MessageNotFound, ErrorCode::RateLimited];

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    (
        "editMessage",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::MessageNotFound,
            ErrorCode::RateLimited,
            ErrorCode::InvalidClientEditId,
            ErrorCode::TextEmpty,
            ErrorCode::TextTooLong,
            ErrorCode::InvalidText,
            ErrorCode::IdempotencyConflict,
            ErrorCode::NotMessageSender,
            ErrorCode::EditWindowClosed,
            ErrorCode::MessageDeleted,
            ErrorCode::RecipientUnavailable,
            ErrorCode::UserBlocked,
        ],
    ),
    (
        "unsendMessage",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::MessageNotFound,
            ErrorCode::RateLimited,
            ErrorCode::NotMessageSender,
            ErrorCode::EditWindowClosed,
        ],
    ),
    ("hideMessage", MEMBERSHIP),
    (
        "setReaction",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::MessageNotFound,
            ErrorCode::RateLimited,
            ErrorCode::InvalidEmoji,
            ErrorCode::MessageDeleted,
            ErrorCode::RecipientUnavailable,
            ErrorCode::UserBlocked,
        ],
    ),
    (
        "removeReaction",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::MessageNotFound,
            ErrorCode::RateLimited,
            ErrorCode::MessageDeleted,
            ErrorCode::RecipientUnavailable,
            ErrorCode::UserBlocked,
        ],
    ),
];

#[OpenApi(tag = "ApiTags::Conversations")]
impl MessageChangesApi {
    /// Edit the text of one's own message, within `DUET_EDIT_WINDOW_SECS`
    /// of sending. Both members' sessions get `chat.message.updated`.
    #[oai(path = "/conversations/:id/messages/:messageId", method = "patch", operation_id = "editMessage")]
    async fn edit(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "messageId")] message_id: Path<MessageId>,
        body: Json<EditMessageRequest>,
    ) -> ApiResult<MessageResponse> {
        let Json(body) = body;
        let request = EditRequest {
            conversation_id: id.0,
            message_id: message_id.0,
            client_edit_id: body.client_edit_id.into_inner(),
            text: body.text.into_inner(),
        };
        let changed = self.0.edit(auth.user_id(), None, request).await?;
        Ok(MessageResponse::Ok(Json(changed.message)))
    }

    /// Unsend one's own message (delete for everyone), within the edit
    /// window: it becomes a tombstone for both members and its content is
    /// erased. Unsending it again answers the same tombstone.
    #[oai(path = "/conversations/:id/messages/:messageId", method = "delete", operation_id = "unsendMessage")]
    async fn unsend(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "messageId")] message_id: Path<MessageId>,
    ) -> ApiResult<MessageResponse> {
        let changed = self.0.unsend(auth.user_id(), None, id.0, message_id.0).await?;
        Ok(MessageResponse::Ok(Json(changed.message)))
    }

    /// Delete a message for oneself only: it leaves the caller's history,
    /// search and sync; the peer keeps it. Repeating it is harmless.
    #[oai(path = "/conversations/:id/messages/:messageId/hide", method = "post", operation_id = "hideMessage")]
    async fn hide(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "messageId")] message_id: Path<MessageId>,
    ) -> ApiResult<HideResponse> {
        self.0.hide(auth.user_id(), None, id.0, message_id.0).await?;
        Ok(HideResponse::Hidden)
    }

    /// Set or change the caller's one reaction to a message.
    #[oai(path = "/conversations/:id/messages/:messageId/reaction", method = "put", operation_id = "setReaction")]
    async fn set_reaction(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "messageId")] message_id: Path<MessageId>,
        body: Json<ReactionRequest>,
    ) -> ApiResult<MessageResponse> {
        let changed = self.0.react(auth.user_id(), None, id.0, message_id.0, Some(&body.0.emoji)).await?;
        Ok(MessageResponse::Ok(Json(changed.message)))
    }

    /// Remove the caller's reaction to a message (nothing to remove is not an error).
    #[oai(path = "/conversations/:id/messages/:messageId/reaction", method = "delete", operation_id = "removeReaction")]
    async fn remove_reaction(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "messageId")] message_id: Path<MessageId>,
    ) -> ApiResult<MessageResponse> {
        let changed = self.0.react(auth.user_id(), None, id.0, message_id.0, None).await?;
        Ok(MessageResponse::Ok(Json(changed.message)))
    }
}
