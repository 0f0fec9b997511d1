//! What every push provider takes and how it can fail.

use duet_common::ids::ConversationId;
use std::time::Duration;

/// One notification to one device.
#[derive(Clone, Debug)]
pub struct Notification {
    /// `true`: no alert, only data (a badge update the app applies quietly).
    pub silent: bool,
    pub title: String,
    pub body: String,
    pub conversation_id: ConversationId,
    /// The newest unread message of the conversation (0 for a badge update).
    pub seq: i64,
    /// The user's total unread count.
    pub badge: i64,
    /// Notifications with the same id replace each other on the device.
    pub collapse_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The token is invalid, or the app was uninstalled: delete the token.
    #[error("device token rejected: {0}")]
    BadToken(String),
    /// The provider did not take it; worth trying again later.
    #[error("temporary failure: {error}")]
    Retry { retry_after: Option<Duration>, error: String },
    /// It will not work as it is (bad credentials, bad payload).
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The request may have reached the provider (e.g. a timeout after it
    /// was written): resending could show the notification twice.
    #[error("outcome unknown: {0}")]
    InDoubt(String),
}

impl SendError {
    /// Classifies a transport error: only a failure to connect proves the
    /// request never left.
    pub fn from_transport(e: reqwest::Error) -> Self {
        if e.is_connect() {
            SendError::Retry { retry_after: None, error: format!("connect: {e}") }
        } else {
            SendError::InDoubt(e.to_string())
        }
    }
}

/// `Retry-After` in seconds (the form FCM uses). HTTP dates are ignored: the
/// backoff applies instead.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Seconds since the Unix epoch, for JWT `iat`/`exp`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
