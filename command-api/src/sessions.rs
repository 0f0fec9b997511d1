//! Sign-ins that can be revoked: rotating refresh tokens, logout, log out
//! everywhere, and the revocations a password change makes.
//!
//! A sign-in (`auth_sessions`) is made by a login or a registration and is
//! the `sid` of every access token issued for it. It holds one live refresh
//! token at a time: a refresh spends the token it is given and returns a new
//! access token and a new refresh token. A spent token presented again means
//! two parties hold the family (one of them a thief, and we cannot tell
//! which), so the whole sign-in is revoked (RFC 9700, section 4.14.2).
//!
//! A revocation is committed in PostgreSQL (REST refuses the sign-in's access
//! tokens once each node's `SessionCheck` cache expires; this node forgets
//! at once), then published on the user's live channel, so every gateway
//! closes the sign-in's WebSockets with 4401.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use duet_common::auth::{AccessToken, hash_password, verify_password};
use duet_common::error::ErrorCode;
use duet_common::ids::{AuthSessionId, UserId};
use duet_common::sessions::revoked;
use duet_common::{ApiError, AppContext};
use sha2::{Digest, Sha256};

/// Longest device label kept (the sign-in's User-Agent).
const MAX_DEVICE_CHARS: usize = 200;

/// What a sign-in or a refresh hands the client.
#[derive(Debug)]
pub struct Issued {
    pub access: AccessToken,
    /// Opaque; shown once, stored only as its hash.
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

/// Why a sign-in was revoked (stored, for audit).
#[derive(Clone, Copy, Debug)]
enum Reason {
    Logout,
    LogoutAll,
    PasswordChanged,
    RefreshTokenReused,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Logout => "logout",
            Reason::LogoutAll => "logout_all",
            Reason::PasswordChanged => "password_changed",
            Reason::RefreshTokenReused => "refresh_token_reused",
        }
    }
}

/// A new refresh token (256 random bits, base64url) and the hash stored for it.
fn new_refresh_token() -> (String, Vec<u8>) {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = hash(&token);
    (token, hash)
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn refresh_ttl(ctx: &AppContext) -> i64 {
    i64::try_from(ctx.settings.refresh_token_ttl_secs).unwrap_or(i64::MAX / 2)
}

/// The device label kept for a User-Agent: printable, bounded.
fn device_label(user_agent: Option<&str>) -> Option<String> {
    let label: String = user_agent?.chars().filter(|c| !c.is_control()).take(MAX_DEVICE_CHARS).collect();
    let label = label.trim();
    (!label.is_empty()).then(|| label.to_owned())
}

/// Starts a sign-in for `user_id` (after a login or a registration).
pub async fn start(ctx: &AppContext, user_id: UserId, user_agent: Option<&str>) -> Result<Issued, ApiError> {
    let session = AuthSessionId::new();
    let (refresh_token, refresh_hash) = new_refresh_token();
    let ttl = refresh_ttl(ctx);
    let mut tx = ctx.db.begin().await?;
    // Sign-ins that ended long ago are kept no longer than a refresh token lives.
    sqlx::query("delete from auth_sessions where user_id = $1 and coalesce(revoked_at, expires_at) < now() - make_interval(secs => $2)")
        .bind(user_id)
        .bind(ttl as f64)
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into auth_sessions (id, user_id, device, expires_at) values ($1, $2, $3, now() + make_interval(secs => $4))")
        .bind(session)
        .bind(user_id)
        .bind(device_label(user_agent))
        .bind(ttl as f64)
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into refresh_tokens (hash, session_id) values ($1, $2)")
        .bind(&refresh_hash)
        .bind(session)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Issued { access: ctx.jwt.issue(user_id, session)?, refresh_token, refresh_expires_in: ttl })
}

/// Exchanges a refresh token for a new pair, spending it. Reuse of a spent
/// token revokes its sign-in.
pub async fn refresh(ctx: &AppContext, refresh_token: &str) -> Result<(UserId, Issued), ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidRefreshToken, "unknown or expired refresh token; sign in again");
    let ttl = refresh_ttl(ctx);
    let mut tx = ctx.db.begin().await?;
    // The sign-in's row is locked: two refreshes of one family run one after the other.
    let found: Option<(AuthSessionId, UserId, bool, bool, bool)> = sqlx::query_as(
        "select s.id, s.user_id, t.spent_at is not null, s.revoked_at is not null, s.expires_at <= now()
         from refresh_tokens t join auth_sessions s on s.id = t.session_id
         where t.hash = $1
         for update of s",
    )
    .bind(hash(refresh_token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((session, user_id, spent, is_revoked, expired)) = found else {
        return Err(invalid());
    };
    if is_revoked {
        return Err(revoked());
    }
    if expired {
        return Err(invalid());
    }
    if spent {
        revoke_in(&mut tx, user_id, Some(session), Reason::RefreshTokenReused).await?;
        tx.commit().await?;
        tracing::warn!(user = %user_id, %session, "a spent refresh token was presented again; the sign-in is revoked");
        announce(ctx, user_id, Some(session), &[session]).await;
        return Err(ApiError::new(
            ErrorCode::RefreshTokenReused,
            "this refresh token was already used; the session is revoked, sign in again",
        ));
    }
    let (next, next_hash) = new_refresh_token();
    sqlx::query("update refresh_tokens set spent_at = now() where hash = $1").bind(hash(refresh_token)).execute(&mut *tx).await?;
    sqlx::query("insert into refresh_tokens (hash, session_id) values ($1, $2)").bind(&next_hash).bind(session).execute(&mut *tx).await?;
    // Spent tokens older than a refresh token's life would be refused as expired anyway.
    sqlx::query(
        "delete from refresh_tokens where session_id = $1 and spent_at is not null and created_at < now() - make_interval(secs => $2)",
    )
    .bind(session)
    .bind(ttl as f64)
    .execute(&mut *tx)
    .await?;
    sqlx::query("update auth_sessions set last_used_at = now(), expires_at = now() + make_interval(secs => $2) where id = $1")
        .bind(session)
        .bind(ttl as f64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((user_id, Issued { access: ctx.jwt.issue(user_id, session)?, refresh_token: next, refresh_expires_in: ttl }))
}

/// Ends one sign-in of `user_id` (logout).
pub async fn logout(ctx: &AppContext, user_id: UserId, session: AuthSessionId) -> Result<(), ApiError> {
    let mut tx = ctx.db.begin().await?;
    let ended = revoke_in(&mut tx, user_id, Some(session), Reason::Logout).await?;
    tx.commit().await?;
    announce(ctx, user_id, Some(session), &ended).await;
    Ok(())
}

/// Ends every sign-in of `user_id` (log out everywhere).
pub async fn logout_all(ctx: &AppContext, user_id: UserId) -> Result<(), ApiError> {
    let mut tx = ctx.db.begin().await?;
    let ended = revoke_in(&mut tx, user_id, None, Reason::LogoutAll).await?;
    tx.commit().await?;
    announce(ctx, user_id, None, &ended).await;
    Ok(())
}

/// Changes the password of `user_id` after checking the current one, ends
/// every sign-in, and starts a new one for the caller.
pub async fn change_password(
    ctx: &AppContext,
    user_id: UserId,
    current: String,
    new: String,
    user_agent: Option<&str>,
) -> Result<Issued, ApiError> {
    // The registration rules, under this operation's field name.
    duet_common::domain::validate_password(&new, &[]).map_err(|e| match e {
        ApiError::Refused { code, message } => ApiError::Refused { code, message: message.replace("`password`", "`newPassword`") },
        other => other,
    })?;
    let stored: Option<String> =
        sqlx::query_scalar("select password_hash from users where id = $1").bind(user_id).fetch_optional(&ctx.db).await?;
    let Some(stored) = stored else {
        return Err(revoked());
    };
    if current.len() > crate::accounts::MAX_PASSWORD_BYTES || !verify_password(current, Some(stored.clone())).await? {
        return Err(ApiError::new(ErrorCode::WrongPassword, "`currentPassword` is incorrect"));
    }
    let new_hash = hash_password(new).await?;
    let mut tx = ctx.db.begin().await?;
    // Unchanged since it was verified: a concurrent change wins, this one is refused.
    let changed = sqlx::query("update users set password_hash = $2 where id = $1 and password_hash = $3")
        .bind(user_id)
        .bind(&new_hash)
        .bind(&stored)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(ApiError::new(ErrorCode::WrongPassword, "the password changed meanwhile; `currentPassword` is incorrect"));
    }
    let ended = revoke_in(&mut tx, user_id, None, Reason::PasswordChanged).await?;
    tx.commit().await?;
    announce(ctx, user_id, None, &ended).await;
    start(ctx, user_id, user_agent).await
}

/// Revokes the user's sign-in `session` (every one when `None`) in `tx`; returns those it ended.
async fn revoke_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: UserId,
    session: Option<AuthSessionId>,
    reason: Reason,
) -> Result<Vec<AuthSessionId>, ApiError> {
    Ok(sqlx::query_scalar(
        "update auth_sessions set revoked_at = now(), revoked_reason = $3
         where user_id = $1 and ($2::uuid is null or id = $2) and revoked_at is null
         returning id",
    )
    .bind(user_id)
    .bind(session)
    .bind(reason.as_str())
    .fetch_all(&mut **tx)
    .await?)
}

/// After a committed revocation: this node forgets the ended sign-ins at
/// once, and every gateway closes their WebSockets (a lost publish is caught
/// by the gateways' periodic re-check).
async fn announce(ctx: &AppContext, user_id: UserId, session: Option<AuthSessionId>, ended: &[AuthSessionId]) {
    ctx.session_check.forget(ended).await;
    ctx.live.publish(vec![ctx.live.revoked(user_id, session)]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, a_hash) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert_eq!(a_hash, hash(&a));
        assert_eq!(a_hash.len(), 32);
    }

    #[test]
    fn device_labels_are_printable_and_bounded() {
        assert_eq!(device_label(Some(" Duet/1.0 (iOS)\u{7} ")), Some("Duet/1.0 (iOS)".to_owned()));
        assert_eq!(device_label(Some("  ")), None);
        assert_eq!(device_label(None), None);
        assert_eq!(device_label(Some(&"x".repeat(500))).map(|l| l.len()), Some(MAX_DEVICE_CHARS));
    }
}
