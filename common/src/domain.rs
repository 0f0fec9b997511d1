//! Domain types shared by the command side, the query side and the gateway,
//! and the input rules every entry point applies the same way.

use crate::error::ErrorCode;
use crate::ids::{ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest message text, in characters, after trimming.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest client message id.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// Largest `payload` of a non-text message, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes: bounds the hashing work a single request can ask for.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Least zxcvbn score (0 to 4) of a new password: 3 is "safely unguessable:
/// moderate protection from offline slow-hash scenarios" (about 10^8 guesses and more).
pub const MIN_PASSWORD_SCORE: u8 = 3;
/// The estimator looks at this many leading characters; its work grows fast with length,
/// and a password this long and weak in its first part is weak.
const PASSWORD_SCORED_CHARS: usize = 100;

/// What a message carries. Text messages have `text`; others carry a
/// `payload` (for example an attachment reference) and an optional caption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Enum, sqlx::Type, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    File,
    Audio,
    Video,
    Location,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::File => "file",
            MessageType::Audio => "audio",
            MessageType::Video => "video",
            MessageType::Location => "location",
        }
    }
}

/// A stored message, as every API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object, sqlx::FromRow, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    /// Position in the conversation: 1, 2, 3, ... with no gaps. The sync cursor.
    #[schemars(range(min = 1))]
    pub seq: i64,
    pub sender_id: UserId,
    pub receiver_id: UserId,
    #[serde(rename = "type")]
    #[oai(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: MessageType,
    /// The text, or a non-text message's caption; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TEXT_CHARS))]
    pub text: Option<String>,
    /// A non-text message's JSON object; absent on text messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub payload: Option<serde_json::Value>,
    pub client_msg_id: String,
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub created_at: DateTime<Utc>,
    /// The message this one quotes, as it is now (its latest text, or a
    /// tombstone once unsent); absent when it quotes none, and on a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[sqlx(json(nullable))]
    pub reply_to: Option<ReplyPreview>,
    /// When the sender last edited the text; absent if never.
    #[serde(with = "rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub edited_at: Option<DateTime<Utc>>,
    /// How many times the text was edited; absent (0) if never.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[oai(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub edit_count: i32,
    /// Set when the sender unsent the message: a tombstone, whose `text`,
    /// `payload` and `replyTo` are gone for good.
    #[serde(with = "rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Reactions, one entry per emoji, in the order they were first given; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[sqlx(json(nullable))]
    pub reactions: Option<Vec<Reaction>>,
    /// The conversation's change position of the message's latest change
    /// (edit, unsend, reaction): the `afterChange` cursor of `chat.sync`.
    /// Absent if the message never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub change_seq: Option<i64>,
    /// Set only in `chat.sync` results, on a message the caller deleted for
    /// themselves: a stub without `text`, `payload`, `replyTo` or
    /// `reactions`, there so the seqs a client holds stay gap-free.
    #[serde(with = "rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DateTime<Utc>>")]
    #[sqlx(default)]
    pub hidden_at: Option<DateTime<Utc>>,
}

impl Message {
    /// The stub of a message its reader hid at `at`: what sync returns in its place.
    pub fn into_hidden_stub(self, at: DateTime<Utc>) -> Message {
        Message { text: None, payload: None, reply_to: None, reactions: None, hidden_at: Some(at), ..self }
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A quoted message as a reply shows it, read live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ReplyPreview {
    pub id: MessageId,
    #[schemars(range(min = 1))]
    pub seq: i64,
    pub sender_id: UserId,
    #[serde(rename = "type")]
    #[oai(rename = "type")]
    pub kind: MessageType,
    /// The quoted message's text now; absent when it has none or was unsent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Set when the quoted message was unsent.
    #[serde(with = "rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The users who reacted to a message with one emoji.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    #[schemars(range(min = 1))]
    pub count: i64,
    /// Who reacted with it, earliest first.
    pub user_ids: Vec<UserId>,
}

/// The columns of `messages` as [`Message`] reads them, for `select` lists
/// over `messages` (not aliased): `concat!("select ", message_columns!(),
/// " from messages …")`. The reply preview and the reactions are read live
/// (a primary-key probe each, only for replies and reacted messages; a
/// reply is in its message's conversation, so on its partition).
#[macro_export]
macro_rules! message_columns {
    () => {
        "id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at, \
         edited_at, edit_count, deleted_at, change_seq, \
         case when messages.reply_to is not null then (\
           select jsonb_build_object('id', q.id, 'seq', q.seq, 'senderId', q.sender_id, 'type', q.type, 'text', q.text, \
             'deletedAt', q.deleted_at) \
           from messages q where q.conversation_id = messages.conversation_id and q.id = messages.reply_to) end as reply_to, \
         case when messages.change_seq is not null then (\
           select jsonb_agg(jsonb_build_object('emoji', x.emoji, 'count', x.n, 'userIds', x.users) order by x.first) \
           from (select r.emoji, count(*) as n, jsonb_agg(r.user_id order by r.created_at, r.user_id) as users, \
                   min(r.created_at) as first \
                 from message_reactions r where r.message_id = messages.id group by r.emoji) x) end as reactions"
    };
}

/// A user as other users see them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct PublicUser {
    pub id: UserId,
    pub name: String,
    /// When the user was last online; absent if never, while unknown, or
    /// when the user's presence is not visible to the caller (their
    /// privacy setting, the caller's own, or a block: see `GET /me/privacy`).
    #[serde(with = "rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// The other member of a conversation, wherever a conversation names them.
/// Their presence and last seen come from `GET /users/{id}` and the
/// WebSocket's `presence.subscribe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
pub struct Peer {
    pub id: UserId,
    pub name: String,
}

/// The signed-in user's own account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct User {
    pub id: UserId,
    pub email: String,
    /// E.164; absent when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub name: String,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When the user was last online; absent if never.
    #[serde(with = "rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A new message as a client submits it, before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub client_msg_id: String,
    pub kind: MessageType,
    pub text: Option<String>,
    pub payload: Option<serde_json::Value>,
    /// The earlier message of the same conversation this one quotes.
    pub reply_to: Option<MessageId>,
}

impl NewMessage {
    /// Applies the input rules and normalizes the text (trimmed): the only
    /// way to get a [`ValidMessage`], which is what the appender stores.
    ///
    /// Text messages need 1..=4000 characters after trimming; other types need a
    /// JSON object `payload` and may carry a caption within the same limit.
    pub fn validate(mut self) -> Result<ValidMessage, ApiError> {
        validate_client_msg_id(&self.client_msg_id)?;
        self.text = match self.text.take() {
            Some(text) => Some(validate_text(&text)?),
            None => None,
        };
        match self.kind {
            MessageType::Text => {
                if self.text.is_none() {
                    return Err(ApiError::new(ErrorCode::TextRequired, "a text message needs `text`"));
                }
                if self.payload.is_some() {
                    return Err(ApiError::new(ErrorCode::InvalidPayload, "a text message carries no `payload`"));
                }
            }
            _ => match &self.payload {
                Some(serde_json::Value::Object(_)) => {
                    let size = serde_json::to_vec(&self.payload).map(|v| v.len()).unwrap_or(usize::MAX);
                    if size > MAX_PAYLOAD_BYTES {
                        return Err(ApiError::new(
                            ErrorCode::PayloadTooLarge,
                            format!("`payload` must be at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
                        ));
                    }
                    if contains_nul(self.payload.as_ref().expect("checked above")) {
                        return Err(ApiError::new(ErrorCode::InvalidPayload, "`payload` must not contain NUL characters"));
                    }
                }
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidPayload,
                        format!("a `{}` message needs a JSON object `payload`", self.kind.as_str()),
                    ));
                }
            },
        }
        Ok(ValidMessage(self))
    }
}

/// A [`NewMessage`] that passed [`NewMessage::validate`]; read its fields
/// through `Deref`. Nothing else makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidMessage(NewMessage);

impl std::ops::Deref for ValidMessage {
    type Target = NewMessage;

    fn deref(&self) -> &NewMessage {
        &self.0
    }
}

impl ValidMessage {
    /// The same message with a `payload` the server built from what it checked
    /// (an attachment message's), in place of the client's.
    pub fn with_payload(mut self, payload: serde_json::Value) -> ValidMessage {
        self.0.payload = Some(payload);
        self
    }

    /// Whether `message` stores exactly this content (used to tell a retry from a reused id).
    /// A message edited or unsent since is taken as the same: its content
    /// was changed on purpose, and the retry gets it as it is now.
    pub fn same_content(&self, message: &Message) -> bool {
        if message.edit_count > 0 || message.deleted_at.is_some() {
            return self.kind == message.kind;
        }
        self.kind == message.kind
            && self.text == message.text
            && self.payload == message.payload
            && self.reply_to == message.reply_to.as_ref().map(|r| r.id)
    }
}

/// Text rules: 1..=4000 characters after trimming, no NUL (PostgreSQL cannot store it).
pub fn validate_text(text: &str) -> Result<String, ApiError> {
    if text.contains('\0') {
        return Err(ApiError::new(ErrorCode::InvalidText, "`text` must not contain NUL characters"));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ApiError::new(ErrorCode::TextEmpty, "`text` must not be empty"));
    }
    if trimmed.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::new(ErrorCode::TextTooLong, format!("`text` must be at most {MAX_TEXT_CHARS} characters")));
    }
    Ok(trimmed.to_owned())
}

/// Password rules for a new password (registration, a password change):
/// 8 characters to 1 KiB, no control characters, and a zxcvbn score of at
/// least [`MIN_PASSWORD_SCORE`], judged also against the account's own
/// details (`user_inputs`: email, name), which make weak passwords.
pub fn validate_password(password: &str, user_inputs: &[&str]) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::new(ErrorCode::PasswordTooShort, format!("`password` needs at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(ErrorCode::PasswordTooLong, format!("`password` must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if password.chars().any(char::is_control) {
        return Err(ApiError::new(ErrorCode::InvalidPassword, "`password` must not contain control characters"));
    }
    if password.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::PasswordTooWeak, "`password` must not be only spaces"));
    }
    let scored: String = password.chars().take(PASSWORD_SCORED_CHARS).collect();
    let estimate = zxcvbn::zxcvbn(&scored, user_inputs);
    if u8::from(estimate.score()) >= MIN_PASSWORD_SCORE {
        return Ok(());
    }
    let mut advice = Vec::new();
    if let Some(feedback) = estimate.feedback() {
        advice.extend(feedback.warning().map(|w| w.to_string()));
        advice.extend(feedback.suggestions().iter().map(|s| s.to_string()));
    }
    let advice = if advice.is_empty() { "Add another word or two.".to_owned() } else { advice.join(" ") };
    Err(ApiError::new(ErrorCode::PasswordTooWeak, format!("`password` is too easy to guess: {advice}")))
}

/// Client message ids: 1..=64 characters of `[A-Za-z0-9_-]`.
pub fn validate_client_msg_id(id: &str) -> Result<(), ApiError> {
    let valid =
        !id.is_empty() && id.len() <= MAX_CLIENT_MSG_ID_CHARS && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::InvalidClientMsgId, "`clientMsgId` must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`"))
    }
}

fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// Timestamps serialize as poem-openapi writes them (`to_rfc3339`), so a
/// message reads the same over REST and over the WebSocket.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }

    /// The same for optional timestamps.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&at.to_rfc3339()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<DateTime<Utc>>::deserialize(d)
        }
    }
}

/// The form of an email address that is stored and compared: trimmed,
/// NFKC-normalized, lowercased. Lookalikes that normalize alike (fullwidth
/// letters, the Kelvin sign) are one address; validation sees this form.
pub fn canonical_email(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    email.trim().nfkc().collect::<String>().to_lowercase()
}

/// The two members of a 1:1 conversation in stored order (`lo < hi`).
pub fn ordered_pair(a: UserId, b: UserId) -> (UserId, UserId) {
    if a < b { (a, b) } else { (b, a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> NewMessage {
        NewMessage { client_msg_id: "c-1".into(), kind: MessageType::Text, text: Some(t.into()), payload: None, reply_to: None }
    }

    fn code(err: ApiError) -> &'static str {
        err.code().as_str()
    }

    #[test]
    fn text_is_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(text("  hi  ").validate().unwrap().text.as_deref(), Some("hi"));
        let max = "é".repeat(MAX_TEXT_CHARS);
        assert!(text(&max).validate().is_ok());
        assert_eq!(code(text(&format!("{max}e")).validate().unwrap_err()), "text_too_long");
        assert_eq!(code(text(" \n\t ").validate().unwrap_err()), "text_empty");
        assert_eq!(code(text("a\0b").validate().unwrap_err()), "invalid_text");
    }

    #[test]
    fn client_msg_id_accepts_only_its_alphabet() {
        assert!(validate_client_msg_id("A-z_09").is_ok());
        assert!(validate_client_msg_id(&"x".repeat(64)).is_ok());
        for bad in ["", " ", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(validate_client_msg_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn non_text_messages_need_an_object_payload() {
        let image = |payload| NewMessage { client_msg_id: "c".into(), kind: MessageType::Image, text: None, payload, reply_to: None };
        assert!(image(Some(serde_json::json!({"url": "https://x/y.png"}))).validate().is_ok());
        assert_eq!(code(image(None).validate().unwrap_err()), "invalid_payload");
        assert_eq!(code(image(Some(serde_json::json!("x"))).validate().unwrap_err()), "invalid_payload");
        let big = serde_json::json!({"a": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert_eq!(code(image(Some(big)).validate().unwrap_err()), "payload_too_large");
    }

    #[test]
    fn weak_blank_and_control_passwords_are_refused_naming_the_field() {
        let refused = |p: &str| match validate_password(p, &["kate@example.com", "Kate"]) {
            Err(err @ ApiError::Refused { .. }) => {
                assert!(err.to_string().contains("`password`"), "{err}");
                err.code().as_str()
            }
            other => panic!("{p:?}: {other:?}"),
        };
        assert_eq!(refused("        "), "password_too_weak");
        assert_eq!(refused(&"\0".repeat(8)), "invalid_password");
        assert_eq!(refused("pass\tword-orbit-71"), "invalid_password");
        assert_eq!(refused("password"), "password_too_weak");
        assert_eq!(refused("kate@example.com"), "password_too_weak");
        assert_eq!(refused("short"), "password_too_short");
        assert_eq!(refused(&"x".repeat(MAX_PASSWORD_BYTES + 1)), "password_too_long");
        for strong in ["plum orbit garden 71", "correct horse battery staple", "Ünïcödé-lantern-quartz"] {
            assert!(validate_password(strong, &[]).is_ok(), "{strong:?}");
        }
    }

    #[test]
    fn lookalike_emails_are_one_address() {
        assert_eq!(canonical_email(" Kate@Example.com "), "kate@example.com");
        assert_eq!(canonical_email("\u{212A}ate@example.com"), "kate@example.com", "the Kelvin sign");
        assert_eq!(canonical_email("\u{FF4B}\u{FF41}\u{FF54}\u{FF45}@example.com"), "kate@example.com", "fullwidth letters");
    }

    #[test]
    fn ordered_pair_is_symmetric() {
        let (a, b) = (UserId::new(), UserId::new());
        assert_eq!(ordered_pair(a, b), ordered_pair(b, a));
        let (lo, hi) = ordered_pair(a, b);
        assert!(lo < hi);
    }
}
