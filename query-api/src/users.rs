//! Account and user reads. Another user's `lastSeenAt` follows their
//! presence privacy (`duet_common::privacy`), read uncached.

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::domain::{PublicUser, User, canonical_email};
use duet_common::error::ErrorCode;
use duet_common::ids::UserId;
use duet_common::privacy::{PresenceVisibility, PrivacySettings};
use poem_openapi::Object;
use serde::Serialize;
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
/// `lastSeenAt` only when `viewer` may see it (`presence_visible`).
pub async fn lookup_by_email(db: &PgPool, viewer: UserId, email: &str) -> Result<PublicUser, ApiError> {
    let not_found = || ApiError::new(ErrorCode::UserNotFound, "no user with this email");
    // PostgreSQL text cannot hold NUL: no address has one.
    if email.contains('\0') {
        return Err(not_found());
    }
    sqlx::query_as("select id, name, case when presence_visible($2, id) then last_seen_at end as last_seen_at from users where email = $1")
        .bind(canonical_email(email))
        .bind(viewer)
        .fetch_optional(db)
        .await?
        .ok_or_else(not_found)
}

/// A user's public profile; `lastSeenAt` only when `viewer` may see it.
pub async fn by_id(db: &PgPool, viewer: UserId, user_id: UserId) -> Result<PublicUser, ApiError> {
    sqlx::query_as("select id, name, case when presence_visible($2, id) then last_seen_at end as last_seen_at from users where id = $1")
        .bind(user_id)
        .bind(viewer)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such user"))
}

/// The caller's privacy settings.
pub async fn privacy(db: &PgPool, user_id: UserId) -> Result<PrivacySettings, ApiError> {
    let stored: String = sqlx::query_scalar("select presence_visibility from users where id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))?;
    Ok(PrivacySettings { presence: PresenceVisibility::from_stored(&stored)? })
}

/// A user the caller has blocked.
#[derive(Clone, Debug, Serialize, Object, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct BlockedUser {
    pub id: UserId,
    pub name: String,
    pub blocked_at: DateTime<Utc>,
}

/// The users the caller has blocked, most recent first.
#[derive(Clone, Debug, Serialize, Object)]
pub struct BlockList {
    pub users: Vec<BlockedUser>,
}

pub async fn blocks(db: &PgPool, user_id: UserId) -> Result<BlockList, ApiError> {
    let users = sqlx::query_as(
        "select u.id, u.name, b.created_at as blocked_at from blocks b join users u on u.id = b.blocked_id \
         where b.blocker_id = $1 order by b.created_at desc, u.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(BlockList { users })
}
