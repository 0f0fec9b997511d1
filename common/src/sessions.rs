//! Whether a sign-in (`auth_sessions`, the `sid` of access tokens) still
//! stands: the check every authenticated request and WebSocket makes
//! (`crate::auth::authenticate`).
//!
//! Answers are cached for `DUET_SESSION_CACHE_MS`, so a busy client costs
//! PostgreSQL one lookup per interval, not one per request. That interval is
//! the longest a revoked access token still works on REST on another node;
//! the node that revokes forgets its own answers at once. Open WebSockets
//! learn of a revocation on their user's live channel
//! (`crate::live::Live::Revoked`), and re-check here periodically in case
//! that publish was lost.

use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;

use crate::auth::Claims;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AuthSessionId, UserId};

/// Most sign-ins one node remembers.
const CACHED_SESSIONS: u64 = 100_000;

/// Where a sign-in stands, as last read from PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Active, for this user.
    Active(UserId),
    /// Revoked, expired, or gone with its account.
    Ended,
}

pub struct SessionCheck {
    db: PgPool,
    /// Recent answers by sign-in; see the module docs for what the TTL bounds.
    cache: Cache<AuthSessionId, Standing>,
}

impl SessionCheck {
    pub fn new(db: PgPool, ttl: Duration) -> Self {
        SessionCheck { db, cache: Cache::builder().max_capacity(CACHED_SESSIONS).time_to_live(ttl).build() }
    }

    /// Refuses the token unless its sign-in is active and belongs to its subject.
    pub async fn check(&self, claims: &Claims) -> Result<(), ApiError> {
        let standing = match self.cache.get(&claims.sid).await {
            Some(standing) => standing,
            None => {
                let standing = self.read(claims.sid).await?;
                self.cache.insert(claims.sid, standing).await;
                standing
            }
        };
        match standing {
            Standing::Active(user) if user == claims.sub => Ok(()),
            _ => Err(revoked()),
        }
    }

    /// Reads the sign-in from PostgreSQL, bypassing the cache (a WebSocket's periodic check).
    pub async fn check_now(&self, claims: &Claims) -> Result<(), ApiError> {
        self.cache.invalidate(&claims.sid).await;
        self.check(claims).await
    }

    /// Forgets what this node knew of these sign-ins (they were just revoked here).
    pub async fn forget(&self, sessions: &[AuthSessionId]) {
        for session in sessions {
            self.cache.invalidate(session).await;
        }
    }

    async fn read(&self, session: AuthSessionId) -> Result<Standing, ApiError> {
        // Deleting an account deletes its sign-ins (on delete cascade).
        let user: Option<UserId> =
            sqlx::query_scalar("select user_id from auth_sessions where id = $1 and revoked_at is null and expires_at > now()")
                .bind(session)
                .fetch_optional(&self.db)
                .await?;
        Ok(user.map_or(Standing::Ended, Standing::Active))
    }
}

/// The refusal of a token whose sign-in ended.
pub fn revoked() -> ApiError {
    ApiError::new(ErrorCode::SessionRevoked, "this session has ended; sign in again")
}
