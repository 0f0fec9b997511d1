//! The one mapping of refusals to WebSocket `error` frames and close codes.

use duet_common::ApiError;
use duet_common::error::ErrorCode;
use duet_common::protocol::{ErrorData, ServerEvent};

/// Close codes the gateway uses (documented in `docs/protocol.md`).
pub mod close {
    /// The client closed, or the server ends an idle connection whose presence lapsed.
    pub const NORMAL: u16 = 1000;
    /// Broken WebSocket framing: an unmasked client frame, reserved bits, an unknown opcode.
    pub const PROTOCOL: u16 = 1002;
    /// A frame the protocol does not allow (binary data).
    pub const UNSUPPORTED: u16 = 1003;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// The client sent a flood of bad frames.
    pub const POLICY: u16 = 1008;
    /// A frame larger than `DUET_WS_MAX_FRAME_BYTES`.
    pub const TOO_BIG: u16 = 1009;
    /// The node is shutting down; reconnect (to another node) and sync.
    pub const RESTART: u16 = 1012;
    /// The client did not read fast enough; reconnect and sync.
    pub const TRY_AGAIN: u16 = 1013;
    /// Invalid or expired token.
    pub const UNAUTHORIZED: u16 = 4401;
    /// No authentication in time, or no frame (not even a ping) within the presence TTL.
    pub const TIMEOUT: u16 = 4408;
}

/// An `error` frame answering the frame `reference` (if it had an id).
pub fn error_frame(reference: Option<&str>, code: ErrorCode, message: impl Into<String>) -> String {
    ServerEvent::Error(ErrorData { reference: reference.map(str::to_owned), code, message: message.into(), retry_after_ms: None }).encode()
}

/// The `error` frame of a command refusal; internal causes are logged, not sent.
pub fn api_error_frame(reference: Option<&str>, err: &ApiError) -> String {
    let body = err.body();
    let retry_after_ms = match err {
        ApiError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
        _ => None,
    };
    ServerEvent::Error(ErrorData { reference: reference.map(str::to_owned), code: body.code, message: body.message, retry_after_ms })
        .encode()
}
