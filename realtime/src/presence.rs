//! Presence as the gateway tells it: `presence.update` to a user's
//! conversation peers when the user comes online or goes offline, and the
//! sweeper that notices offline users, whether they closed cleanly (the last
//! session's close scores them "now") or crashed (their key lapsed).
//!
//! Every node runs the sweeper; `presence::claim_expired` hands each user to
//! exactly one of them.

use duet_common::ids::UserId;
use std::time::Duration;

use chrono::{DateTime, Utc};
use duet_common::protocol::{PresenceStatus, PresenceUpdate, ServerEvent};
use duet_common::supervise::{Health, supervise};
use duet_common::{AppContext, last_seen, presence};
use tokio_util::sync::CancellationToken;

use crate::store;

/// How often each node claims users whose presence ended.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Users claimed per sweep step.
const SWEEP_BATCH: usize = 256;

/// Tells the user's peers (on whatever node they are) that the user's
/// status changed: those who may see it (`duet_common::privacy`).
pub async fn announce(ctx: &AppContext, user_id: UserId, status: PresenceStatus, last_seen_at: Option<DateTime<Utc>>) {
    let peers = match store::presence_viewers(&ctx.db, user_id).await {
        Ok(peers) => peers,
        Err(_) => return,
    };
    if peers.is_empty() {
        return;
    }
    let update = ServerEvent::PresenceUpdate(PresenceUpdate { reference: None, user_id, status, last_seen_at }).encode();
    ctx.live.publish(vec![ctx.live.frame(peers, &update)]).await;
}

/// Runs [`sweep`] supervised (component "presence-sweeper") until `stop` is set.
pub async fn supervised_sweep(ctx: AppContext, stop: CancellationToken) {
    let health = ctx.components.register("presence-sweeper", true);
    supervise(health, stop.clone(), |health| sweep(ctx.clone(), health, stop.clone())).await
}

/// Announces offline users and hands their last-seen time to the jobs, until
/// `stop` is set. (Redis being out is not its failure: it sweeps nothing then.)
pub async fn sweep(ctx: AppContext, health: Health, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        health.ok();
        loop {
            let ended = presence::claim_expired(&ctx.redis, &ctx.keys, SWEEP_BATCH).await;
            let full = ended.len() == SWEEP_BATCH;
            for (user_id, at) in ended {
                last_seen::record(&ctx.redis, &ctx.keys, user_id, at).await;
                announce(&ctx, user_id, PresenceStatus::Offline, Some(at)).await;
            }
            if !full {
                break;
            }
        }
    }
}

/// The current status of each of `users` that shares a conversation with `user_id`,
/// as `presence.update` frames answering `reference`; and how many were refused.
/// A peer whose presence the user may not see reads `unknown`, as when
/// Redis cannot tell, so the answer does not reveal their setting.
pub async fn snapshot(
    ctx: &AppContext,
    user_id: UserId,
    users: &[UserId],
    reference: Option<&str>,
) -> Result<(Vec<String>, usize), duet_common::ApiError> {
    let peers = store::peers_among(&ctx.db, user_id, users).await?;
    let online = presence::online(&ctx.fast_redis, &ctx.keys, &peers.iter().map(|p| p.0).collect::<Vec<_>>()).await;
    let frames = peers
        .iter()
        .enumerate()
        .map(|(i, (peer, last_seen_at, visible))| {
            let (status, last_seen_at) = match online.as_ref().map(|o| o[i]).filter(|_| *visible) {
                Some(true) => (PresenceStatus::Online, None),
                Some(false) => (PresenceStatus::Offline, *last_seen_at),
                None => (PresenceStatus::Unknown, None),
            };
            ServerEvent::PresenceUpdate(PresenceUpdate { reference: reference.map(str::to_owned), user_id: *peer, status, last_seen_at })
                .encode()
        })
        .collect();
    Ok((frames, users.len() - peers.len()))
}
