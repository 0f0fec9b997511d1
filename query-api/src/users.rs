//! Account and user reads.

use duet_common::ApiError;
use duet_common::domain::{PublicUser, User, canonical_email};
use duet_common::error::ErrorCode;
use duet_common::ids::UserId;
use sqlx::PgPool;

pub async fn me(db: &PgPool, user_id: UserId) -> Result<User, ApiError> {
    sqlx::query_as("select id, email, phone, name, created_at, last_seen_at from users where id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?
        // A valid token for a deleted account.
        .ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))
}

/// A user by exact email (case-insensitive), so an app can start a chat.
pub async fn lookup_by_email(db: &PgPool, email: &str) -> Result<PublicUser, ApiError> {
    let not_found = || ApiError::new(ErrorCode::UserNotFound, "no user with this email");
    // PostgreSQL text cannot hold NUL: no address has one.
    if email.contains('\0') {
        return Err(not_found());
    }
    sqlx::query_as("select id, name, last_seen_at from users where email = $1")
        .bind(canonical_email(email))
        .fetch_optional(db)
        .await?
        .ok_or_else(not_found)
}

pub async fn by_id(db: &PgPool, user_id: UserId) -> Result<PublicUser, ApiError> {
    sqlx::query_as("select id, name, last_seen_at from users where id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such user"))
}
