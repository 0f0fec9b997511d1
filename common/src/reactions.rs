//! The input rules of message changes that every entry point (REST and
//! the WebSocket) applies the same way: what an emoji reaction may be, and
//! what an edit's idempotency key looks like.
//!
//! "One emoji" is decided by the `emojis` crate's table of Unicode emoji
//! (with skin tones and ZWJ sequences), not by a hand-written range check:
//! a reaction is exactly one entry of that table.

use crate::ApiError;
use crate::domain::{MAX_CLIENT_MSG_ID_CHARS, validate_client_msg_id};
use crate::error::ErrorCode;

/// Longest emoji accepted, in bytes (the longest ZWJ sequences with skin tones are about 35).
pub const MAX_EMOJI_BYTES: usize = 64;

/// An emoji reaction: exactly one emoji, as the `emojis` table knows it.
pub fn validate_emoji(emoji: &str) -> Result<String, ApiError> {
    if emoji.len() <= MAX_EMOJI_BYTES && emojis::get(emoji).is_some() {
        Ok(emoji.to_owned())
    } else {
        Err(ApiError::new(ErrorCode::InvalidEmoji, "`emoji` must be exactly one emoji"))
    }
}

/// Client edit ids follow the client message id rule: 1..=64 characters of `[A-Za-z0-9_-]`.
pub fn validate_client_edit_id(id: &str) -> Result<(), ApiError> {
    validate_client_msg_id(id).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidClientEditId,
            format!("`clientEditId` must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters of A-Z, a-z, 0-9, `_` and `-`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_emoji_with_its_modifiers_is_a_reaction_and_nothing_else_is() {
        for ok in ["👍", "❤️", "🙌🏼", "👩‍❤️‍👨", "🇫🇷"] {
            assert!(validate_emoji(ok).is_ok(), "{ok:?} refused");
        }
        for bad in ["", "a", "👍👍", " 👍", "👍 ", ":+1:", "\0", &"👍".repeat(20)] {
            assert_eq!(validate_emoji(bad).unwrap_err().code(), ErrorCode::InvalidEmoji, "{bad:?} accepted");
        }
    }

    #[test]
    fn client_edit_ids_follow_the_client_msg_id_rule() {
        assert!(validate_client_edit_id("e-1_A").is_ok());
        assert_eq!(validate_client_edit_id("a b").unwrap_err().code(), ErrorCode::InvalidClientEditId);
        assert_eq!(validate_client_edit_id("").unwrap_err().code(), ErrorCode::InvalidClientEditId);
    }
}
