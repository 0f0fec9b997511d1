//! Attachments: images, videos, voice notes and files, stored in an
//! S3-compatible bucket and sent in messages by reference.
//!
//! The bytes never pass through Duet. A member asks for an upload
//! ([`Attachments::create`]): the server checks the declared kind, content
//! type, size and file name, writes a `pending` row and answers a presigned
//! PUT for exactly that. The client uploads to the store, then asks the
//! server to [`Attachments::complete`] it: the server HEADs the object and
//! marks it `uploaded` only if it is what was declared. A message of type
//! `image`, `video`, `audio` or `file` then names the attachment
//! ([`message::attach`]), and members fetch it through short-lived presigned
//! GETs ([`Attachments::download`]).
//!
//! Objects are keyed `conversations/<conversationId>/<attachmentId>`, and
//! every operation first checks that the caller is a member of the
//! conversation in the path: a non-member learns nothing, not even whether
//! an attachment exists.

pub mod message;
pub mod rules;
pub mod storage;

use std::time::Duration;

use chrono::{DateTime, Utc};
use duet_common::error::{ApiError, ErrorCode};
use duet_common::ids::{AttachmentId, ConversationId, MessageId, UserId};
use duet_common::ratelimit::Decision;
use duet_common::throttle::Window;
use duet_common::{AppContext, domain::MessageType};
use poem_openapi::Enum;
use serde::{Deserialize, Serialize};

pub use storage::{SignedUrl, Storage};

/// What an attachment is; each kind is sent as the message type of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Enum, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum AttachmentKind {
    Image,
    Video,
    /// Voice notes and other audio.
    Audio,
    File,
}

impl AttachmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Image => "image",
            AttachmentKind::Video => "video",
            AttachmentKind::Audio => "audio",
            AttachmentKind::File => "file",
        }
    }

    /// The kind a message type carries; `None` for types without an attachment (`text`, `location`).
    pub fn of_message(kind: MessageType) -> Option<Self> {
        match kind {
            MessageType::Image => Some(AttachmentKind::Image),
            MessageType::Video => Some(AttachmentKind::Video),
            MessageType::Audio => Some(AttachmentKind::Audio),
            MessageType::File => Some(AttachmentKind::File),
            MessageType::Text | MessageType::Location => None,
        }
    }
}

/// Whether the object has been checked in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum AttachmentStatus {
    Pending,
    Uploaded,
}

/// A row of `attachments`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Attachment {
    pub id: AttachmentId,
    pub conversation_id: ConversationId,
    pub uploader_id: UserId,
    pub kind: AttachmentKind,
    pub content_type: String,
    pub size_bytes: i64,
    pub file_name: Option<String>,
    pub object_key: String,
    pub status: AttachmentStatus,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
}

/// An upload as a client declares it, before the rules.
#[derive(Clone, Debug)]
pub struct NewUpload {
    pub kind: AttachmentKind,
    pub content_type: String,
    pub size: i64,
    pub file_name: Option<String>,
}

/// The columns of `attachments`, in [`Attachment`]'s order, for `concat!`.
macro_rules! columns {
    () => {
        "id, conversation_id, uploader_id, kind, content_type, size_bytes, file_name, object_key, status, created_at, uploaded_at"
    };
}

/// The attachment handlers, shared by the REST operations and the send path.
#[derive(Clone)]
pub struct Attachments {
    ctx: AppContext,
    /// `None` when no store is configured: every operation answers 503.
    storage: Option<Storage>,
    /// Uploads started per user per hour, across nodes: each costs a row and
    /// may park up to the kind's limit in the bucket.
    uploads: Window,
}

impl Attachments {
    pub fn new(ctx: &AppContext) -> anyhow::Result<Self> {
        let settings = &ctx.settings.attachments;
        Ok(Attachments {
            storage: Storage::from_settings(settings)?,
            uploads: Window::new(settings.attachment_uploads_per_hour, Duration::from_secs(3600)),
            ctx: ctx.clone(),
        })
    }

    fn storage(&self) -> Result<&Storage, ApiError> {
        self.storage.as_ref().ok_or_else(|| {
            ApiError::new(ErrorCode::AttachmentsUnavailable, "attachments are not configured on this server (no object storage)")
        })
    }

    /// Checks an upload, records it `pending` and signs its PUT.
    pub async fn create(&self, user: UserId, conversation: ConversationId, upload: NewUpload) -> Result<(Attachment, SignedUrl), ApiError> {
        let storage = self.storage()?;
        let settings = &self.ctx.settings.attachments;
        let content_type = rules::content_type(upload.kind, &upload.content_type)?;
        let size = rules::size(settings, upload.kind, upload.size)?;
        let file_name = upload.file_name.as_deref().map(rules::file_name).transpose()?;
        self.member(user, conversation).await?;
        if let Decision::Limited { retry_after_ms } = self.uploads.check(&self.ctx.fast_redis, &self.ctx.keys.upload_rate(user)).await {
            return Err(ApiError::RateLimited { retry_after_ms });
        }
        let id = AttachmentId::new();
        let attachment: Attachment = sqlx::query_as(concat!(
            "insert into attachments (id, conversation_id, uploader_id, kind, content_type, size_bytes, file_name, object_key) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) returning ",
            columns!()
        ))
        .bind(id)
        .bind(conversation)
        .bind(user)
        .bind(upload.kind.as_str())
        .bind(&content_type)
        .bind(size)
        .bind(file_name)
        .bind(object_key(conversation, id))
        .fetch_one(&self.ctx.db)
        .await?;
        let url = storage.upload_url(&attachment.object_key, &attachment.content_type, attachment.size_bytes);
        Ok((attachment, url))
    }

    /// Checks the uploaded object with a HEAD and marks the attachment
    /// `uploaded`. Idempotent: a completed attachment is returned as it is.
    /// An object of another size or type is deleted (the client uploads again).
    pub async fn complete(&self, user: UserId, conversation: ConversationId, id: AttachmentId) -> Result<Attachment, ApiError> {
        let storage = self.storage()?;
        self.member(user, conversation).await?;
        let attachment = self.find(conversation, id).await?.filter(|a| a.uploader_id == user).ok_or_else(not_found)?;
        if attachment.status == AttachmentStatus::Uploaded {
            return Ok(attachment);
        }
        let Some(object) = storage.head(&attachment.object_key).await? else {
            return Err(ApiError::new(ErrorCode::UploadMissing, "nothing was uploaded for this attachment yet: PUT it to `upload.url`"));
        };
        let declared_size = u64::try_from(attachment.size_bytes).ok();
        let same_type = object.content_type.as_deref().map(str::to_ascii_lowercase).as_deref() == Some(attachment.content_type.as_str());
        if object.size != declared_size || !same_type {
            storage.delete(&attachment.object_key).await?;
            return Err(ApiError::new(
                ErrorCode::UploadMismatch,
                format!("the upload is not the declared {} bytes of `{}`; it was deleted", attachment.size_bytes, attachment.content_type),
            ));
        }
        // A concurrent completion may have won: either way the row is now `uploaded`.
        let completed: Attachment = sqlx::query_as(concat!(
            "update attachments set status = 'uploaded', uploaded_at = coalesce(uploaded_at, now()) where id = $1 returning ",
            columns!()
        ))
        .bind(id)
        .fetch_one(&self.ctx.db)
        .await?;
        Ok(completed)
    }

    /// A short-lived download URL of an uploaded attachment, for members only.
    pub async fn download(
        &self,
        user: UserId,
        conversation: ConversationId,
        id: AttachmentId,
    ) -> Result<(Attachment, SignedUrl), ApiError> {
        let storage = self.storage()?;
        self.member(user, conversation).await?;
        let attachment = self.find(conversation, id).await?.ok_or_else(not_found)?;
        match attachment.status {
            AttachmentStatus::Uploaded => {
                let url = storage.download_url(&attachment.object_key);
                Ok((attachment, url))
            }
            // The peer does not learn of an upload that is not finished.
            AttachmentStatus::Pending if attachment.uploader_id == user => Err(not_uploaded()),
            AttachmentStatus::Pending => Err(not_found()),
        }
    }

    /// Deletes the attachment's object from the store (its row stays, so a
    /// message naming it still reads; downloads then find no object). For
    /// content that must go: an unsent message's attachment.
    pub async fn delete_object(&self, attachment: &Attachment) -> Result<(), ApiError> {
        self.storage()?.delete(&attachment.object_key).await
    }

    /// The attachment an unsend is about to erase from `message`: its id,
    /// when the message is an attachment message the sender has not unsent yet.
    pub async fn of_message(&self, conversation: ConversationId, message: MessageId) -> Result<Option<AttachmentId>, ApiError> {
        let id: Option<Option<String>> = sqlx::query_scalar(
            "select payload ->> 'attachmentId' from messages \
             where id = $1 and conversation_id = $2 and deleted_at is null and type in ('image', 'video', 'audio', 'file')",
        )
        .bind(message)
        .bind(conversation)
        .fetch_optional(&self.ctx.db)
        .await?;
        Ok(id.flatten().and_then(|id| id.parse::<uuid::Uuid>().ok()).map(AttachmentId))
    }

    /// After an unsend: deletes the object and the row of attachment `id`
    /// unless a live message of the conversation still names it (a resend
    /// under another `clientMsgId` shares the upload). Best effort: the
    /// unsend stands whatever the store answers; a failure is logged.
    pub async fn forget_unsent(&self, conversation: ConversationId, id: AttachmentId) {
        let forgotten = async {
            let named: bool = sqlx::query_scalar(
                "select exists (select 1 from messages where conversation_id = $1 and deleted_at is null \
                   and type in ('image', 'video', 'audio', 'file') and payload ->> 'attachmentId' = $2)",
            )
            .bind(conversation)
            .bind(id.0.to_string())
            .fetch_one(&self.ctx.db)
            .await?;
            if named {
                return Ok(());
            }
            if let Some(attachment) = self.find(conversation, id).await? {
                self.delete_object(&attachment).await?;
                sqlx::query("delete from attachments where id = $1").bind(id).execute(&self.ctx.db).await?;
            }
            Ok::<_, ApiError>(())
        };
        if let Err(e) = forgotten.await {
            tracing::warn!(error = %e, attachment = %id.0, "could not delete an unsent message's attachment");
        }
    }

    /// The attachment `id` of `conversation`, whatever its state.
    pub async fn find(&self, conversation: ConversationId, id: AttachmentId) -> Result<Option<Attachment>, ApiError> {
        find(&self.ctx.db, conversation, id).await
    }

    /// The caller is a member of the conversation, or it does not exist for them.
    async fn member(&self, user: UserId, conversation: ConversationId) -> Result<(), ApiError> {
        let member: bool =
            sqlx::query_scalar("select exists (select 1 from conversation_members where conversation_id = $1 and user_id = $2)")
                .bind(conversation)
                .bind(user)
                .fetch_one(&self.ctx.db)
                .await?;
        if member { Ok(()) } else { Err(ApiError::conversation_not_found()) }
    }
}

/// The attachment `id` of `conversation`, whatever its state.
async fn find(db: &sqlx::PgPool, conversation: ConversationId, id: AttachmentId) -> Result<Option<Attachment>, ApiError> {
    Ok(sqlx::query_as(concat!("select ", columns!(), " from attachments where id = $1 and conversation_id = $2"))
        .bind(id)
        .bind(conversation)
        .fetch_optional(db)
        .await?)
}

/// Where an attachment's bytes live: under its conversation's prefix.
pub fn object_key(conversation: ConversationId, id: AttachmentId) -> String {
    format!("conversations/{conversation}/{id}")
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::AttachmentNotFound, "no such attachment in this conversation")
}

fn not_uploaded() -> ApiError {
    ApiError::new(ErrorCode::AttachmentNotUploaded, "the attachment's upload is not completed: `POST .../complete` it first")
}
