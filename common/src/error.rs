//! The one error type of Duet's APIs, and its one mapping to HTTP.
//!
//! Every refusal carries a stable machine `code` and a human `message`.
//! Server faults keep their cause in the logs and answer a generic body.

use poem_openapi::{ApiResponse, Object, payload::Json};
use serde::{Deserialize, Serialize};

/// The body of every error response (and of WebSocket `error` frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `text_too_long`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or breaks an input rule (400).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Missing, invalid or expired credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The resource does not exist or is not the caller's (404).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The request conflicts with stored state (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
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
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { code, message: message.into() }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict { code, message: message.into() }
    }

    /// The conversation is unknown or the caller is not in it; both look the same.
    pub fn conversation_not_found() -> Self {
        ApiError::not_found("conversation_not_found", "no such conversation")
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. } | ApiError::NotFound { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
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
        ErrorBody { code: self.code().to_owned(), message }
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
            ApiError::Invalid { .. } => ErrorResponse::BadRequest(body),
            ApiError::Unauthorized(_) => ErrorResponse::Unauthorized(body),
            ApiError::NotFound { .. } => ErrorResponse::NotFound(body),
            ApiError::Conflict { .. } => ErrorResponse::Conflict(body),
            ApiError::RateLimited { retry_after_ms } => {
                ErrorResponse::TooManyRequests(body, retry_after_ms.div_ceil(1000).max(1))
            }
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
