//! Attachment uploads and downloads over REST: the upload is declared here,
//! its bytes go to the object store through the presigned URL answered, and
//! the server checks them before anyone can send or fetch them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::{AttachmentId, ConversationId};
use duet_common::json_string::JsonString;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use crate::Commands;
use crate::attachments::{Attachment, AttachmentKind, NewUpload, SignedUrl};

pub struct AttachmentsApi(pub Commands);

/// An upload to start.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CreateAttachmentRequest {
    kind: AttachmentKind,
    /// The file's media type; each kind allows its own (`docs/protocol.md`, "Attachments").
    #[oai(validator(min_length = 1, max_length = 127))]
    content_type: JsonString,
    /// The file's exact size in bytes; at most the kind's limit (`DUET_ATTACHMENT_MAX_*_BYTES`).
    #[oai(validator(minimum(value = "1")))]
    size: i64,
    /// The name the receiver saves the file under: 1 to 255 characters, no
    /// control characters, `/` or `\`, and not a program or a web page.
    #[oai(validator(min_length = 1, max_length = 255))]
    file_name: Option<JsonString>,
}

/// The HTTP method of an upload.
#[derive(Enum)]
enum UploadMethod {
    #[oai(rename = "PUT")]
    Put,
}

/// Where and how to upload the bytes.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct UploadTarget {
    /// A presigned URL on the object store, for this object only.
    url: String,
    method: UploadMethod,
    /// Headers to send as they are (the signature covers them). The body must
    /// be exactly `size` bytes with its `Content-Length` (no chunked upload).
    headers: BTreeMap<String, String>,
    /// The URL works until then.
    expires_at: DateTime<Utc>,
}

/// A started upload.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CreatedAttachment {
    attachment_id: AttachmentId,
    upload: UploadTarget,
}

/// A completed attachment, ready to be sent in a message of its `kind`.
#[derive(Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
struct AttachmentInfo {
    attachment_id: AttachmentId,
    kind: AttachmentKind,
    content_type: String,
    size: i64,
    file_name: Option<String>,
}

/// An attachment with a short-lived download URL.
#[derive(Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
struct AttachmentDownload {
    attachment_id: AttachmentId,
    kind: AttachmentKind,
    content_type: String,
    size: i64,
    file_name: Option<String>,
    /// A presigned GET on the object store.
    url: String,
    /// The URL works until then; ask again for a new one.
    expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum CreateAttachmentResponse {
    /// The upload is recorded; PUT the bytes to `upload.url`, then complete it.
    #[oai(status = 201)]
    Created(Json<CreatedAttachment>),
}

#[derive(ApiResponse)]
enum CompleteAttachmentResponse {
    /// The uploaded object is the declared one: the attachment can be sent.
    #[oai(status = 200)]
    Ok(Json<AttachmentInfo>),
}

#[derive(ApiResponse)]
enum GetAttachmentResponse {
    /// The attachment and a URL to download it.
    #[oai(status = 200)]
    Ok(Json<AttachmentDownload>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    (
        "createAttachment",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::InvalidContentType,
            ErrorCode::AttachmentTooLarge,
            ErrorCode::InvalidFileName,
            ErrorCode::RateLimited,
            ErrorCode::AttachmentsUnavailable,
        ],
    ),
    (
        "completeAttachment",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::AttachmentNotFound,
            ErrorCode::UploadMissing,
            ErrorCode::UploadMismatch,
            ErrorCode::AttachmentsUnavailable,
        ],
    ),
    (
        "getAttachment",
        &[
            ErrorCode::ConversationNotFound,
            ErrorCode::AttachmentNotFound,
            ErrorCode::AttachmentNotUploaded,
            ErrorCode::AttachmentsUnavailable,
        ],
    ),
];

#[OpenApi(tag = "ApiTags::Attachments")]
impl AttachmentsApi {
    /// Start an upload into a conversation of yours. Limited per user
    /// (`DUET_ATTACHMENT_UPLOADS_PER_HOUR`).
    #[oai(path = "/conversations/:id/attachments", method = "post", operation_id = "createAttachment")]
    async fn create(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        body: Json<CreateAttachmentRequest>,
    ) -> ApiResult<CreateAttachmentResponse> {
        let Json(body) = body;
        let upload = NewUpload {
            kind: body.kind,
            content_type: body.content_type.into_inner(),
            size: body.size,
            file_name: body.file_name.map(JsonString::into_inner),
        };
        let (attachment, SignedUrl { url, expires_at }) = self.0.attachments.create(auth.user_id(), id.0, upload).await?;
        let headers = BTreeMap::from([("Content-Type".to_owned(), attachment.content_type.clone())]);
        let upload = UploadTarget { url, method: UploadMethod::Put, headers, expires_at };
        Ok(CreateAttachmentResponse::Created(Json(CreatedAttachment { attachment_id: attachment.id, upload })))
    }

    /// Complete an upload: the server checks the object in the store (size
    /// and content type as declared). Idempotent.
    #[oai(path = "/conversations/:id/attachments/:attachmentId/complete", method = "post", operation_id = "completeAttachment")]
    async fn complete(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "attachmentId")] attachment_id: Path<AttachmentId>,
    ) -> ApiResult<CompleteAttachmentResponse> {
        let attachment = self.0.attachments.complete(auth.user_id(), id.0, attachment_id.0).await?;
        Ok(CompleteAttachmentResponse::Ok(Json(info(attachment))))
    }

    /// An uploaded attachment of a conversation of yours, with a short-lived
    /// download URL (`DUET_ATTACHMENT_URL_TTL_SECS`).
    #[oai(path = "/conversations/:id/attachments/:attachmentId", method = "get", operation_id = "getAttachment")]
    async fn get(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        #[oai(name = "attachmentId")] attachment_id: Path<AttachmentId>,
    ) -> ApiResult<GetAttachmentResponse> {
        let (attachment, SignedUrl { url, expires_at }) = self.0.attachments.download(auth.user_id(), id.0, attachment_id.0).await?;
        let info = info(attachment);
        Ok(GetAttachmentResponse::Ok(Json(AttachmentDownload {
            attachment_id: info.attachment_id,
            kind: info.kind,
            content_type: info.content_type,
            size: info.size,
            file_name: info.file_name,
            url,
            expires_at,
        })))
    }
}

fn info(attachment: Attachment) -> AttachmentInfo {
    AttachmentInfo {
        attachment_id: attachment.id,
        kind: attachment.kind,
        content_type: attachment.content_type,
        size: attachment.size_bytes,
        file_name: attachment.file_name,
    }
}
