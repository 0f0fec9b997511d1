//! Attachment messages: a message of type `image`, `video`, `audio` or
//! `file` names an attachment, and the server stores what it checked.
//!
//! The client's `payload` is `{attachmentId}` plus a few optional hints for
//! drawing the message before it is downloaded (`width`, `height`,
//! `durationMs`, `waveform`). The attachment must be `uploaded`, in this
//! conversation, and the sender's own, and its kind must be the message
//! type. The stored payload is rebuilt by the server from the attachment's
//! row (`attachmentId`, `contentType`, `size`, `fileName`) and the hints,
//! so a receiver never reads a size or type the server did not check, and
//! never a URL: members fetch one with `GET .../attachments/{id}`.
//!
//! Text and location messages pass through untouched, without a query.

use duet_common::domain::ValidMessage;
use duet_common::error::{ApiError, ErrorCode};
use duet_common::ids::{AttachmentId, ConversationId, UserId};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU16;

use super::{AttachmentKind, AttachmentStatus, Attachments};

/// Most bars in a voice note's `waveform`.
pub const MAX_WAVEFORM_BARS: usize = 256;

/// An attachment message's `payload` as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientPayload {
    attachment_id: AttachmentId,
    /// Pixels, 1 to 65535: images and videos.
    width: Option<NonZeroU16>,
    height: Option<NonZeroU16>,
    /// Audio and video length in milliseconds.
    duration_ms: Option<u32>,
    /// A voice note's loudness bars, each 0 to 255, at most [`MAX_WAVEFORM_BARS`].
    waveform: Option<Vec<u8>>,
}

/// An attachment message's `payload` as stored and delivered.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredPayload {
    attachment_id: AttachmentId,
    content_type: String,
    size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<NonZeroU16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<NonZeroU16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waveform: Option<Vec<u8>>,
}

impl Attachments {
    /// For an attachment message, checks the attachment it names and
    /// returns the message with the server's payload; any other message as it is.
    pub async fn attach(&self, sender: UserId, conversation: ConversationId, message: ValidMessage) -> Result<ValidMessage, ApiError> {
        let Some(kind) = AttachmentKind::of_message(message.kind) else { return Ok(message) };
        let hints = hints(kind, message.payload.clone().unwrap_or_default())?;
        // Another user's or another conversation's attachment looks like none at all.
        let attachment =
            self.find(conversation, hints.attachment_id).await?.filter(|a| a.uploader_id == sender).ok_or_else(super::not_found)?;
        if attachment.status != AttachmentStatus::Uploaded {
            return Err(super::not_uploaded());
        }
        if attachment.kind != kind {
            return Err(ApiError::new(
                ErrorCode::AttachmentKindMismatch,
                format!("the attachment is `{}`: send it as a `{}` message", attachment.kind.as_str(), attachment.kind.as_str()),
            ));
        }
        let stored = StoredPayload {
            attachment_id: attachment.id,
            content_type: attachment.content_type,
            size: attachment.size_bytes,
            file_name: attachment.file_name,
            width: hints.width,
            height: hints.height,
            duration_ms: hints.duration_ms,
            waveform: hints.waveform,
        };
        let payload = serde_json::to_value(stored).map_err(|e| ApiError::Internal(e.into()))?;
        Ok(message.with_payload(payload))
    }
}

/// The client's payload, read and bounded; each hint only where it means something.
fn hints(kind: AttachmentKind, payload: serde_json::Value) -> Result<ClientPayload, ApiError> {
    let invalid = |why: String| ApiError::new(ErrorCode::InvalidPayload, format!("an attachment message's `payload`: {why}"));
    let hints: ClientPayload = serde_json::from_value(payload).map_err(|e| invalid(e.to_string()))?;
    let visual = matches!(kind, AttachmentKind::Image | AttachmentKind::Video);
    let timed = matches!(kind, AttachmentKind::Audio | AttachmentKind::Video);
    if !visual && (hints.width.is_some() || hints.height.is_some()) {
        return Err(invalid(format!("`width` and `height` are for images and videos, not `{}`", kind.as_str())));
    }
    if !timed && hints.duration_ms.is_some() {
        return Err(invalid(format!("`durationMs` is for audio and video, not `{}`", kind.as_str())));
    }
    match &hints.waveform {
        Some(_) if kind != AttachmentKind::Audio => Err(invalid("`waveform` is for audio only".into())),
        Some(bars) if bars.len() > MAX_WAVEFORM_BARS => Err(invalid(format!("`waveform` has at most {MAX_WAVEFORM_BARS} bars"))),
        _ => Ok(hints),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(kind: AttachmentKind, payload: serde_json::Value) -> String {
        let err = hints(kind, payload).unwrap_err();
        assert_eq!(err.code().as_str(), "invalid_payload");
        err.to_string()
    }

    #[test]
    fn hints_are_bounded_and_only_where_they_mean_something() {
        let id = AttachmentId::new();
        let voice = hints(AttachmentKind::Audio, json!({"attachmentId": id, "durationMs": 4200, "waveform": [0, 128, 255]})).unwrap();
        assert_eq!((voice.attachment_id, voice.duration_ms, voice.waveform), (id, Some(4200), Some(vec![0, 128, 255])));
        assert!(hints(AttachmentKind::Video, json!({"attachmentId": id, "width": 1920, "height": 1080, "durationMs": 1})).is_ok());
        assert!(refused(AttachmentKind::Image, json!({"url": "https://x/y.png"})).contains("url"));
        refused(AttachmentKind::Image, json!({"attachmentId": "nope"}));
        refused(AttachmentKind::Image, json!({"attachmentId": id, "width": 0}));
        refused(AttachmentKind::Image, json!({"attachmentId": id, "width": 70000}));
        refused(AttachmentKind::File, json!({"attachmentId": id, "width": 10}));
        refused(AttachmentKind::Image, json!({"attachmentId": id, "durationMs": 10}));
        refused(AttachmentKind::Video, json!({"attachmentId": id, "waveform": [1]}));
        refused(AttachmentKind::Audio, json!({"attachmentId": id, "waveform": [256]}));
        let long = vec![1u8; MAX_WAVEFORM_BARS + 1];
        refused(AttachmentKind::Audio, json!({"attachmentId": id, "waveform": long}));
    }
}
