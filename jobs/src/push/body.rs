//! What an alert says. With previews off (the default), only that there is
//! a new message. With previews on, the text, or for a message that is not
//! text a label of what it is ("Photo", "Voice message" …) and its caption:
//! never a payload, so never an attachment's id, object key or URL.

use duet_common::Settings;
use duet_common::domain::MessageType;

/// Longest preview, in characters.
const PREVIEW_CHARS: usize = 200;

/// The body of an alert for the newest unread message: its type and its text or caption.
pub fn alert(settings: &Settings, kind: MessageType, text: Option<&str>) -> String {
    if !settings.push_preview {
        return settings.push_body.clone();
    }
    let preview = match (label(kind), text) {
        (None, Some(text)) => text.to_owned(),
        (Some(label), Some(caption)) => format!("{label}: {caption}"),
        (Some(label), None) => label.to_owned(),
        (None, None) => settings.push_body.clone(),
    };
    preview.chars().take(PREVIEW_CHARS).collect()
}

/// What a message that is not text is called in a notification.
fn label(kind: MessageType) -> Option<&'static str> {
    match kind {
        MessageType::Text => None,
        MessageType::Image => Some("Photo"),
        MessageType::Video => Some("Video"),
        MessageType::Audio => Some("Voice message"),
        MessageType::File => Some("File"),
        MessageType::Location => Some("Location"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_name_what_a_message_is_and_never_its_payload() {
        let mut settings = Settings::from_env().unwrap();
        settings.push_preview = true;
        assert_eq!(alert(&settings, MessageType::Text, Some("lunch?")), "lunch?");
        assert_eq!(alert(&settings, MessageType::Image, None), "Photo");
        assert_eq!(alert(&settings, MessageType::Image, Some("the view")), "Photo: the view");
        assert_eq!(alert(&settings, MessageType::Audio, None), "Voice message");
        assert_eq!(alert(&settings, MessageType::Video, None), "Video");
        assert_eq!(alert(&settings, MessageType::File, None), "File");
        assert_eq!(alert(&settings, MessageType::Text, Some(&"é".repeat(300))).chars().count(), PREVIEW_CHARS);
        settings.push_preview = false;
        assert_eq!(alert(&settings, MessageType::Image, Some("the view")), settings.push_body);
    }
}
