//! The one error type of Duet's APIs, and its one mapping to HTTP.
//!
//! Every refusal carries a stable machine `code` and a human `message`.
//! Server faults keep their cause in the logs and answer a generic body.

use poem_openapi::{ApiResponse, Object, payload::Json};
use serde::{Deserialize, Serialize};

/// The body of every error response (and of WebSocket `error` frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable explanation; may change between versions.
    pub message: String,
}

/// Declares [`ErrorCode`] with, for each code, its HTTP status and its
/// meaning: the catalogue the API documents publish.
macro_rules! error_codes {
    ($($variant:ident = $name:literal, $status:literal, $meaning:literal;)+) => {
        /// Every machine-readable error code of the REST API and the WebSocket
        /// protocol. Codes are stable; new ones may be added.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, poem_openapi::Enum, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        #[oai(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The HTTP status this code is answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
                }
            }

            /// The code as on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)+
                }
            }

            /// What the code means, for the documentation.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                }
            }
        }
    };
}

error_codes! {
    // Requests the framework refuses before any handler runs.
    BadRequest = "bad_request", 400, "The request is malformed: bad JSON, a missing or mistyped field or parameter, or a value outside its declared bounds.";
    Unauthorized = "unauthorized", 401, "Missing, invalid or expired bearer token, unknown account, or wrong email or password.";
    NotFound = "not_found", 404, "No such route.";
    MethodNotAllowed = "method_not_allowed", 405, "The route exists but not with this method.";
    RequestTimeout = "request_timeout", 408, "The request body did not arrive in time (`DUET_HTTP_BODY_TIMEOUT_SECS`).";
    RequestTooLarge = "request_too_large", 413, "The request body is larger than the server accepts.";
    UnsupportedMediaType = "unsupported_media_type", 415, "The body is not `application/json`.";
    RateLimited = "rate_limited", 429, "Too many requests; retry after `Retry-After` seconds (WebSocket: `retryAfterMs`).";
    Internal = "internal", 500, "An unexpected server fault; the cause is logged, not returned.";
    Unavailable = "unavailable", 503, "A dependency (the database) is unavailable; nothing was done, retry.";
    // Accounts.
    InvalidEmail = "invalid_email", 400, "`email` is not a valid address.";
    PasswordTooShort = "password_too_short", 400, "`password` is too short.";
    PasswordTooLong = "password_too_long", 400, "`password` is too long.";
    PasswordTooWeak = "password_too_weak", 400, "`password` is too easy to guess (zxcvbn score below 3) or only spaces; the message says why.";
    InvalidPassword = "invalid_password", 400, "`password` contains control characters.";
    InvalidName = "invalid_name", 400, "`name` is empty or too long.";
    InvalidPhone = "invalid_phone", 400, "`phone` is not in E.164 form.";
    EmailTaken = "email_taken", 409, "An account with this email exists.";
    PhoneTaken = "phone_taken", 409, "An account with this phone number exists.";
    UserNotFound = "user_not_found", 404, "No such user.";
    // Sessions and tokens.
    TokenExpired = "token_expired", 401, "The access token has expired: refresh it (`POST /auth/refresh`) and retry.";
    SessionRevoked = "session_revoked", 401, "The session of this token ended (logout, log out everywhere, password change, or a reused refresh token): sign in again.";
    InvalidRefreshToken = "invalid_refresh_token", 401, "The refresh token is unknown or expired: sign in again.";
    RefreshTokenReused = "refresh_token_reused", 401, "The refresh token was already spent: its whole session is revoked (a copy may have been stolen). Sign in again.";
    WrongPassword = "wrong_password", 403, "`currentPassword` is not the account's password.";
    // Conversations and messages.
    CannotMessageSelf = "cannot_message_self", 400, "A conversation needs another user.";
    ConversationNotFound = "conversation_not_found", 404, "No such conversation, or the caller is not a member.";
    InvalidClientMsgId = "invalid_client_msg_id", 400, "`clientMsgId` is not 1 to 64 characters of `A-Za-z0-9_-`.";
    TextRequired = "text_required", 400, "A `text` message needs `text`.";
    TextEmpty = "text_empty", 400, "`text` is empty after trimming.";
    TextTooLong = "text_too_long", 400, "`text` is longer than 4000 characters.";
    InvalidText = "invalid_text", 400, "`text` contains a NUL character.";
    InvalidPayload = "invalid_payload", 400, "`payload` is missing for a non-text message, present on a text message, not an object, or contains NUL.";
    PayloadTooLarge = "payload_too_large", 400, "`payload` is larger than 16 KiB of JSON.";
    IdempotencyConflict = "idempotency_conflict", 409, "`clientMsgId` was used before for a message with other content, or `clientEditId` for another edit.";
    InvalidClientEditId = "invalid_client_edit_id", 400, "`clientEditId` is not 1 to 64 characters of `A-Za-z0-9_-`.";
    ReplyNotFound = "reply_not_found", 404, "`replyTo` is not a message of this conversation, or it was unsent.";
    NotMessageSender = "not_message_sender", 403, "Only the sender of a message may edit or unsend it.";
    EditWindowClosed = "edit_window_closed", 403, "The message is older than the edit window (`DUET_EDIT_WINDOW_SECS`, 48 h by default): it can no longer be edited or unsent.";
    MessageDeleted = "message_deleted", 409, "The message was unsent: it can no longer be edited or reacted to.";
    InvalidEmoji = "invalid_emoji", 400, "`emoji` is not exactly one emoji.";
    InvalidSeq = "invalid_seq", 400, "A seq is negative.";
    SeqOutOfRange = "seq_out_of_range", 400, "A receipt's seq is beyond the conversation's last message.";
    InvalidRange = "invalid_range", 400, "`afterSeq` is not below `beforeSeq`.";
    InvalidLimit = "invalid_limit", 400, "`limit` is out of range.";
    InvalidCursor = "invalid_cursor", 400, "`cursor` is not a cursor this API returned.";
    InvalidQuery = "invalid_query", 400, "`q` is empty or too long.";
    InvalidToken = "invalid_token", 400, "A device `token` is empty, too long or not printable ASCII.";
    // Privacy, blocking and reports.
    RecipientUnavailable = "recipient_unavailable", 403, "This user cannot receive messages from the caller or be messaged by them; the reason is not told.";
    UserBlocked = "user_blocked", 403, "The caller has blocked this user: unblock them first.";
    CannotBlockSelf = "cannot_block_self", 400, "A user cannot block themselves.";
    InvalidReportTarget = "invalid_report_target", 400, "A report names exactly one of `userId` and `messageId`.";
    MessageNotFound = "message_not_found", 404, "No such message in a conversation of the caller's.";
    InvalidDetails = "invalid_details", 400, "`details` is longer than 1000 characters or contains a control character other than a line break or tab.";
    // Attachments.
    AttachmentsUnavailable = "attachments_unavailable", 503, "Attachments are not configured on this server (no object storage, `DUET_S3_ENDPOINT`).";
    InvalidContentType = "invalid_content_type", 400, "`contentType` is not one allowed for the attachment's `kind`.";
    AttachmentTooLarge = "attachment_too_large", 400, "`size` is above the limit of the attachment's `kind`.";
    InvalidFileName = "invalid_file_name", 400, "`fileName` is empty, longer than 255 characters, or contains a control character, `/` or `\\`.";
    AttachmentNotFound = "attachment_not_found", 404, "No such attachment in this conversation, or it is not the caller's to use.";
    UploadMissing = "upload_missing", 409, "The attachment's object is not in storage: upload it to the `upload.url` first.";
    UploadMismatch = "upload_mismatch", 409, "The uploaded object's size or content type is not what was declared; it was deleted: upload the declared file again.";
    AttachmentNotUploaded = "attachment_not_uploaded", 409, "The attachment's upload is not completed (`POST .../complete`).";
    AttachmentKindMismatch = "attachment_kind_mismatch", 400, "The message `type` is not the attachment's `kind` (`image`, `video`, `audio`, `file`).";
    // WebSocket frames.
    InvalidJson = "invalid_json", 400, "WebSocket: the frame is not JSON.";
    InvalidFrame = "invalid_frame", 400, "WebSocket: the frame is not an object with a string `type`, an optional 1 to 64 character `id`, a numeric `ts` and `data`.";
    UnknownType = "unknown_type", 400, "WebSocket: no such frame type.";
    InvalidData = "invalid_data", 400, "WebSocket: `data` does not fit the frame type.";
    BinaryNotSupported = "binary_not_supported", 400, "WebSocket: frames must be text.";
    AlreadyAuthenticated = "already_authenticated", 400, "WebSocket: the connection is already authenticated.";
    InvalidTarget = "invalid_target", 400, "WebSocket: a send needs exactly one of `conversationId` and `receiverId`.";
    InvalidUserIds = "invalid_user_ids", 400, "WebSocket: `userIds` is empty or too long.";
    NotAPeer = "not_a_peer", 404, "WebSocket: presence of a user who shares no conversation with the caller.";
    DuplicateConversation = "duplicate_conversation", 400, "WebSocket: a conversation is listed twice in one `chat.sync`.";
    TooManyConversations = "too_many_conversations", 400, "WebSocket: too many conversations in one `chat.sync`.";
    OriginNotAllowed = "origin_not_allowed", 403, "The browser `Origin` is not one of `DUET_ALLOWED_ORIGINS` (WebSocket and REST).";
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request breaks a rule; answered with the code's status.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// Missing, invalid or expired credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Too many requests; retry after the given delay (429).
    #[error("rate limit exceeded; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// A dependency is down; the request was not carried out (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected (500). The cause is logged, never returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A refusal with `code`, answered with the code's status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Refused { code, message: message.into() }
    }

    /// The conversation is unknown or the caller is not in it; both look the same.
    pub fn conversation_not_found() -> Self {
        ApiError::new(ErrorCode::ConversationNotFound, "no such conversation")
    }

    /// The stable machine code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Refused { code, .. } => *code,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The public body; internal causes are logged here and replaced by a generic text.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        ErrorBody { code: self.code(), message }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %err, "database unavailable");
                ApiError::Unavailable("the database is unavailable; try again".into())
            }
            _ => ApiError::Internal(err.into()),
        }
    }
}

/// The HTTP shape of [`ApiError`]: every status an operation may answer.
#[derive(ApiResponse, Debug)]
pub enum ErrorResponse {
    /// The request is malformed or breaks an input rule.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid or expired bearer token, or wrong credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Not found, or not visible to the caller.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with stored state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Rate limited; `Retry-After` says when to try again, in seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// Unexpected server fault.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl From<ApiError> for ErrorResponse {
    fn from(err: ApiError) -> Self {
        let body = Json(err.body());
        match err {
            ApiError::Refused { code, .. } => match code.status() {
                401 => ErrorResponse::Unauthorized(body),
                403 => ErrorResponse::Forbidden(body),
                404 => ErrorResponse::NotFound(body),
                409 => ErrorResponse::Conflict(body),
                503 => ErrorResponse::Unavailable(body),
                _ => ErrorResponse::BadRequest(body),
            },
            ApiError::Unauthorized(_) => ErrorResponse::Unauthorized(body),
            ApiError::RateLimited { retry_after_ms } => ErrorResponse::TooManyRequests(body, retry_after_ms.div_ceil(1000).max(1)),
            ApiError::Unavailable(_) => ErrorResponse::Unavailable(body),
            ApiError::Internal(_) => ErrorResponse::Internal(body),
        }
    }
}

impl From<sqlx::Error> for ErrorResponse {
    fn from(err: sqlx::Error) -> Self {
        ApiError::from(err).into()
    }
}

/// Result of an HTTP operation.
pub type ApiResult<T> = Result<T, ErrorResponse>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_as_serde_writes_it() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str(), "{code:?}");
            assert!((400..600).contains(&code.status()), "{code:?}");
        }
    }
}
