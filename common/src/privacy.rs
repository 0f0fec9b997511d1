//! Presence privacy and blocks, as every service applies them.
//!
//! Who sees whose presence (live status and `lastSeenAt`) is decided in one
//! place, the SQL function `presence_visible(viewer, target)` (migration
//! 0013): the target's setting (`everyone`, `contacts`: users the target has
//! sent a message to, or `nobody`), the viewer's own (who hides theirs sees
//! no one's), and a block either way. Reads call it in their own queries;
//! this module holds the setting's type, the refusals a block causes, and
//! the re-announcement that corrects what peers were told live when the
//! rule's answer changes (a setting changed, a block placed or lifted).

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::ids::UserId;
use crate::protocol::{PresenceStatus, PresenceUpdate, ServerEvent};
use crate::{ApiError, AppContext, presence};

/// Who sees a user's presence and last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum PresenceVisibility {
    /// Every signed-in user.
    Everyone,
    /// Users the user has sent a message to.
    Contacts,
    /// No one; and the user sees no one's.
    Nobody,
}

impl PresenceVisibility {
    /// As stored in `users.presence_visibility`.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceVisibility::Everyone => "everyone",
            PresenceVisibility::Contacts => "contacts",
            PresenceVisibility::Nobody => "nobody",
        }
    }

    /// From the stored text; the column's check constraint allows no other.
    pub fn from_stored(text: &str) -> Result<Self, ApiError> {
        match text {
            "everyone" => Ok(PresenceVisibility::Everyone),
            "contacts" => Ok(PresenceVisibility::Contacts),
            "nobody" => Ok(PresenceVisibility::Nobody),
            other => Err(ApiError::Internal(anyhow::anyhow!("unknown stored presence visibility `{other}`"))),
        }
    }
}

/// The caller's privacy settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
pub struct PrivacySettings {
    /// Who sees your presence and last seen. Default `contacts`. With
    /// `nobody` you see no one's either.
    pub presence: PresenceVisibility,
}

/// A block between a sender and a receiver, as `duet_append` and the
/// conversation check name it.
pub fn block_refusal(refusal: &str) -> ApiError {
    match refusal {
        // The receiver blocked the sender. The answer names no reason, as
        // messaging apps do not tell a user they were blocked.
        "blocked" => ApiError::new(ErrorCode::RecipientUnavailable, "this user cannot receive your messages"),
        "blocking" => ApiError::new(ErrorCode::UserBlocked, "you blocked this user; unblock them to message them"),
        other => ApiError::Internal(anyhow::anyhow!("unknown block refusal `{other}`")),
    }
}

/// The block refusal between a sender (`$1`) and a receiver (`$2`), as a
/// SQL expression: `'blocked'`, `'blocking'` or null (as in `duet_append`).
#[macro_export]
macro_rules! block_refusal_sql {
    () => {
        "case \
         when exists (select 1 from blocks b where b.blocker_id = $2 and b.blocked_id = $1) then 'blocked' \
         when exists (select 1 from blocks b where b.blocker_id = $1 and b.blocked_id = $2) then 'blocking' end"
    };
}

/// One pair whose presence visibility may have changed.
#[derive(sqlx::FromRow)]
struct Pair {
    viewer: UserId,
    target: UserId,
    visible: bool,
    last_seen_at: Option<DateTime<Utc>>,
}

/// Tells every viewer of `pairs` (`(viewer, target)`) who shares a
/// conversation with its target what they may now see of the target's
/// presence: the current status if visible, `unknown` if not. Live pushes
/// only reach conversation peers, so only they can hold a stale status.
pub async fn reannounce(ctx: &AppContext, pairs: &[(UserId, UserId)]) -> Result<(), ApiError> {
    let (viewers, targets): (Vec<UserId>, Vec<UserId>) = pairs.iter().copied().unzip();
    let pairs: Vec<Pair> = sqlx::query_as(
        "select p.viewer, p.target, presence_visible(p.viewer, p.target) as visible, u.last_seen_at \
         from unnest($1::uuid[], $2::uuid[]) as p(viewer, target) \
         join users u on u.id = p.target \
         where exists (select 1 from conversation_members m where m.user_id = p.viewer and m.peer_id = p.target)",
    )
    .bind(&viewers)
    .bind(&targets)
    .fetch_all(&ctx.db)
    .await?;
    if pairs.is_empty() {
        return Ok(());
    }
    let targets: Vec<UserId> = pairs.iter().map(|p| p.target).collect();
    let online = presence::online(&ctx.fast_redis, &ctx.keys, &targets).await;
    let events = pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let (status, last_seen_at) = match (pair.visible, online.as_ref().map(|o| o[i])) {
                (false, _) | (true, None) => (PresenceStatus::Unknown, None),
                (true, Some(true)) => (PresenceStatus::Online, None),
                (true, Some(false)) => (PresenceStatus::Offline, pair.last_seen_at),
            };
            let frame =
                ServerEvent::PresenceUpdate(PresenceUpdate { reference: None, user_id: pair.target, status, last_seen_at }).encode();
            ctx.live.frame(vec![pair.viewer], &frame)
        })
        .collect();
    ctx.live.publish(events).await;
    Ok(())
}

/// Both directions between `user` and each of their conversation peers:
/// what to re-announce after `user` changed their setting.
pub async fn pairs_with_peers(ctx: &AppContext, user: UserId) -> Result<Vec<(UserId, UserId)>, ApiError> {
    let peers: Vec<UserId> =
        sqlx::query_scalar("select peer_id from conversation_members where user_id = $1").bind(user).fetch_all(&ctx.db).await?;
    Ok(peers.into_iter().flat_map(|peer| [(peer, user), (user, peer)]).collect())
}
