//! Changes to who may see and reach a user: the presence setting and blocks.
//!
//! Each change re-announces presence to the conversation peers it concerns
//! (`duet_common::privacy::reannounce`), so a status pushed before the
//! change does not outlive it. Reads apply the rule in their own queries,
//! uncached: a change holds for every read from the moment it commits.

use duet_common::ApiError;
use duet_common::error::ErrorCode;
use duet_common::ids::UserId;
use duet_common::privacy::{self, PresenceVisibility, PrivacySettings};

use crate::Commands;

impl Commands {
    /// Sets who sees the caller's presence; returns the settings now in force.
    pub async fn set_privacy(&self, user_id: UserId, settings: PrivacySettings) -> Result<PrivacySettings, ApiError> {
        let previous: Option<String> = sqlx::query_scalar(
            "update users u set presence_visibility = $2 from users old \
             where u.id = $1 and old.id = u.id returning old.presence_visibility",
        )
        .bind(user_id)
        .bind(settings.presence.as_str())
        .fetch_optional(&self.ctx.db)
        .await?;
        let previous = previous.ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))?;
        if PresenceVisibility::from_stored(&previous)? != settings.presence {
            self.reannounce(&privacy::pairs_with_peers(&self.ctx, user_id).await?).await;
        }
        Ok(settings)
    }

    /// Blocks `blocked` for `blocker`; blocking twice is one block.
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<(), ApiError> {
        if blocker == blocked {
            return Err(ApiError::new(ErrorCode::CannotBlockSelf, "you cannot block yourself"));
        }
        let inserted =
            sqlx::query("insert into blocks (blocker_id, blocked_id) select $1, u.id from users u where u.id = $2 on conflict do nothing")
                .bind(blocker)
                .bind(blocked)
                .execute(&self.ctx.db)
                .await?;
        if inserted.rows_affected() == 0 {
            self.user_exists(blocked).await?;
            return Ok(());
        }
        self.reannounce(&[(blocker, blocked), (blocked, blocker)]).await;
        Ok(())
    }

    /// Lifts a block; lifting one that is not there is not an error.
    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<(), ApiError> {
        let deleted = sqlx::query("delete from blocks where blocker_id = $1 and blocked_id = $2")
            .bind(blocker)
            .bind(blocked)
            .execute(&self.ctx.db)
            .await?;
        if deleted.rows_affected() == 0 {
            return self.user_exists(blocked).await;
        }
        self.reannounce(&[(blocker, blocked), (blocked, blocker)]).await;
        Ok(())
    }

    async fn user_exists(&self, user_id: UserId) -> Result<(), ApiError> {
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from users where id = $1)").bind(user_id).fetch_one(&self.ctx.db).await?;
        if exists { Ok(()) } else { Err(ApiError::new(ErrorCode::UserNotFound, "no such user")) }
    }

    /// The change is committed: a failed re-announcement is logged, not
    /// returned (the next presence change of the pair corrects it).
    async fn reannounce(&self, pairs: &[(UserId, UserId)]) {
        if let Err(e) = privacy::reannounce(&self.ctx, pairs).await {
            tracing::warn!(error = %e, "presence re-announcement failed");
        }
    }
}
