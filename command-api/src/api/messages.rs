use duet_common::ids::{ConversationId, MessageId};
use std::collections::BTreeMap;

use duet_common::auth::BearerAuth;
use duet_common::domain::{Message, MessageType, NewMessage};
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::json_string::JsonString;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::{Commands, Markers, Receipt, Target};

pub struct MessagesApi(pub Commands);

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct SendMessageRequest {
    /// The client's idempotency key: 1 to 64 characters of `[A-Za-z0-9_-]`.
    /// A retry with the same key and content returns the stored message.
    #[oai(validator(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    client_msg_id: JsonString,
    /// 1 to 4000 characters after trimming. Required for `text` messages.
    #[oai(validator(min_length = 1, max_length = 4000))]
    text: Option<JsonString>,
    /// Defaults to `text`.
    #[oai(rename = "type")]
    kind: Option<MessageType>,
    /// A JSON object for non-text messages (at most 16 KiB). `image`, `video`,
    /// `audio` and `file` messages name a completed upload: `{attachmentId}`
    /// and optional `width`, `height`, `durationMs`, `waveform` (`docs/protocol.md`,
    /// "Attachments"); the server stores them with the attachment's `contentType`,
    /// `size` and `fileName`. `location` payloads are free.
    payload: Option<BTreeMap<String, serde_json::Value>>,
    /// The id of an earlier message of this conversation to quote (refused
    /// with `reply_not_found` if the conversation holds no such live message).
    reply_to: Option<MessageId>,
}

#[derive(Object)]
struct ReceiptRequest {
    /// Cumulative: everything up to and including this seq.
    #[oai(validator(minimum(value = "0")))]
    seq: i64,
}

#[derive(ApiResponse)]
enum SendMessageResponse {
    /// A retry of an earlier send: the stored message.
    #[oai(status = 200)]
    Existing(Json<Message>),
    /// The message is stored.
    #[oai(status = 201)]
    Created(Json<Message>),
}

#[derive(ApiResponse)]
enum ReceiptResponse {
    /// The caller's markers after the receipt.
    #[oai(status = 200)]
    Ok(Json<Markers>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    (
        "sendMessage",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::InvalidClientMsgId,
            ErrorCode::TextRequired,
            ErrorCode::TextEmpty,
            ErrorCode::TextTooLong,
            ErrorCode::InvalidText,
            ErrorCode::InvalidPayload,
            ErrorCode::PayloadTooLarge,
            ErrorCode::AttachmentNotFound,
            ErrorCode::AttachmentNotUploaded,
            ErrorCode::AttachmentKindMismatch,
            ErrorCode::IdempotencyConflict,
            ErrorCode::ReplyNotFound,
            ErrorCode::RateLimited,
            ErrorCode::RecipientUnavailable,
            ErrorCode::UserBlocked,
        ],
    ),
    ("markDelivered", &[ErrorCode::ConversationNotFound, ErrorCode::InvalidSeq, ErrorCode::SeqOutOfRange]),
    ("markRead", &[ErrorCode::ConversationNotFound, ErrorCode::InvalidSeq, ErrorCode::SeqOutOfRange]),
];

#[OpenApi(tag = "ApiTags::Conversations")]
impl MessagesApi {
    /// Send a message. Answered only once it is durable.
    #[oai(path = "/conversations/:id/messages", method = "post", operation_id = "sendMessage")]
    async fn send(&self, auth: BearerAuth, id: Path<ConversationId>, body: Json<SendMessageRequest>) -> ApiResult<SendMessageResponse> {
        let Json(body) = body;
        let message = NewMessage {
            client_msg_id: body.client_msg_id.into_inner(),
            kind: body.kind.unwrap_or(MessageType::Text),
            text: body.text.map(JsonString::into_inner),
            payload: body.payload.map(|p| serde_json::Value::Object(p.into_iter().collect())),
            reply_to: body.reply_to,
        };
        let appended = self.0.send(auth.user_id(), Target::Conversation(id.0), message).await?;
        Ok(if appended.created {
            SendMessageResponse::Created(Json(appended.message))
        } else {
            SendMessageResponse::Existing(Json(appended.message))
        })
    }

    /// Mark everything up to `seq` delivered to the caller.
    #[oai(path = "/conversations/:id/delivered", method = "post", operation_id = "markDelivered")]
    async fn delivered(&self, auth: BearerAuth, id: Path<ConversationId>, body: Json<ReceiptRequest>) -> ApiResult<ReceiptResponse> {
        let markers = self.0.receipt(auth.user_id(), id.0, body.0.seq, Receipt::Delivered).await?;
        Ok(ReceiptResponse::Ok(Json(markers)))
    }

    /// Mark everything up to `seq` read by the caller (implies delivered).
    #[oai(path = "/conversations/:id/read", method = "post", operation_id = "markRead")]
    async fn read(&self, auth: BearerAuth, id: Path<ConversationId>, body: Json<ReceiptRequest>) -> ApiResult<ReceiptResponse> {
        let markers = self.0.receipt(auth.user_id(), id.0, body.0.seq, Receipt::Read).await?;
        Ok(ReceiptResponse::Ok(Json(markers)))
    }
}
