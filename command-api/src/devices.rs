//! Push device tokens.

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::error::ErrorCode;
use duet_common::ids::{DeviceId, UserId};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

pub const MAX_TOKEN_CHARS: usize = 4096;

/// The push service a device token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
}

#[derive(Clone, Debug, Serialize, Object, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Device {
    pub id: DeviceId,
    pub platform: Platform,
    pub token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Registers a token for `user_id`. A token already known moves to this user
/// (a phone that changed accounts) and is refreshed.
pub async fn register(db: &PgPool, user_id: UserId, platform: Platform, token: &str) -> Result<(Device, bool), ApiError> {
    let token = token.trim();
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(ErrorCode::InvalidToken, "`token` must be 1 to 4096 printable ASCII characters"));
    }
    let (device, inserted): (Device, bool) = sqlx::query_as::<_, (DeviceId, String, DateTime<Utc>, DateTime<Utc>, bool)>(
        "insert into device_tokens (id, user_id, platform, token) values ($1, $2, $3, $4) \
         on conflict (token) do update set user_id = excluded.user_id, platform = excluded.platform, last_seen_at = now() \
         returning id, token, created_at, last_seen_at, (xmax = 0)",
    )
    .bind(DeviceId::new())
    .bind(user_id)
    .bind(platform.as_str())
    .bind(token)
    .fetch_one(db)
    .await
    .map(|(id, token, created_at, last_seen_at, inserted)| (Device { id, platform, token, created_at, last_seen_at }, inserted))?;
    Ok((device, inserted))
}

/// Removes the caller's token (on logout). Unknown tokens are a no-op.
pub async fn unregister(db: &PgPool, user_id: UserId, token: &str) -> Result<(), ApiError> {
    sqlx::query("delete from device_tokens where user_id = $1 and token = $2").bind(user_id).bind(token.trim()).execute(db).await?;
    Ok(())
}
