//! Shared ground for every Duet service: settings, domain types, events,
//! the error type, auth, database and Redis connections, telemetry and metrics.
//!
//! Kept deliberately small: anything that belongs to one service lives in
//! that service's crate.

pub mod auth;
pub mod body_schemas;
pub mod breaker;
pub mod client_ip;
pub mod context;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod fanout;
pub mod http;
pub mod ids;
pub mod json_string;
pub mod keys;
pub mod last_seen;
pub mod live;
pub mod log_throttle;
pub mod metrics;
pub mod presence;
pub mod privacy;
pub mod protocol;
pub mod ratelimit;
pub mod reactions;
pub mod read_model;
pub mod readiness;
pub mod redis;
pub mod replicas;
pub mod sessions;
pub mod settings;
pub mod stream;
pub mod supervise;
pub mod telemetry;
pub mod throttle;

pub use context::AppContext;
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorResponse};
pub use settings::Settings;
