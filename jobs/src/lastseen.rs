//! `users.last_seen_at`, written in batches.
//!
//! The gateway records each user who goes offline in the Redis sorted set
//! `lastseen:pending` (see `duet_common::last_seen`). The mover here takes
//! up to `DUET_LASTSEEN_BATCH` entries, enqueues them as one job (durable in
//! PostgreSQL), and only then removes them from the set, each only if its
//! time did not change meanwhile. A crash between the two leaves the entries
//! in the set and they are moved again: a write twice, never a write lost.
//! The job writes all of them in one statement that never moves a time back.

use duet_common::ids::UserId;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{Attempt, BoxDynError, Data};
use chrono::{DateTime, Utc};
use duet_common::AppContext;
use duet_common::keys::PRESENCE_SHARDS;
use duet_common::supervise::Health;
use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics::JobMetrics;
use crate::queue;

/// How often old delivery claims and finished jobs are deleted.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

/// apalis re-runs a failed batch (each poll) up to this many times.
const MAX_ATTEMPTS: usize = 10;

/// Users and when they were last seen (unix ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastSeenBatch {
    pub entries: Vec<(UserId, i64)>,
}

/// KEYS = [pending]; ARGV = [member, score, member, score, …]: removes each
/// member whose score is still the one that was read.
static REMOVE_UNCHANGED: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"#,
    )
});

/// KEYS = [pending]; ARGV = [count]: the oldest entries, flat `member, score, …`.
static TAKE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua("return redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')"));

/// Moves one batch from Redis into a job: up to `limit` entries, taken
/// shard by shard (each presence shard has its own pending set); returns
/// how many entries it moved.
pub async fn move_batch(ctx: &AppContext, metrics: &JobMetrics, limit: usize) -> anyhow::Result<usize> {
    let mut taken: Vec<(String, Vec<String>)> = Vec::new();
    let mut left = limit;
    for shard in 0..PRESENCE_SHARDS {
        if left == 0 {
            break;
        }
        let key = ctx.keys.last_seen_pending(shard);
        let flat: Vec<String> = TAKE
            .evalsha_with_reload(ctx.redis.next(), vec![key.clone()], vec![left.to_string()])
            .await
            .context("Failed to read pending lastSeen entries")?;
        if !flat.is_empty() {
            left -= flat.len() / 2;
            taken.push((key, flat));
        }
    }
    if taken.is_empty() {
        return Ok(0);
    }
    let entries: Vec<(UserId, i64)> = taken
        .iter()
        .flat_map(|(_, flat)| flat.chunks_exact(2))
        .filter_map(|pair| Some((pair[0].parse().ok()?, pair[1].parse::<f64>().ok()? as i64)))
        .collect();
    if !entries.is_empty() {
        let mut conn = ctx.db.acquire().await?;
        queue::push(&mut conn, queue::LASTSEEN_QUEUE, &LastSeenBatch { entries }, Duration::ZERO, MAX_ATTEMPTS).await?;
        JobMetrics::inc(&metrics.enqueued, "lastseen");
    }
    // Unparseable members are removed too: they would block the set forever.
    for (key, flat) in taken {
        let _: i64 = REMOVE_UNCHANGED
            .evalsha_with_reload(ctx.redis.next(), vec![key], flat)
            .await
            .context("Failed to remove moved lastSeen entries")?;
    }
    Ok(limit - left)
}

/// Moves pending entries every `DUET_LASTSEEN_INTERVAL_MS`, back to back
/// while batches come out full, until `stop`; returns the first error (its
/// supervisor restarts it). Also does the jobs' hourly housekeeping, since
/// it is the one loop every jobs process runs.
pub async fn run_mover(ctx: AppContext, metrics: JobMetrics, health: Health, stop: CancellationToken) -> anyhow::Result<()> {
    let limit = ctx.settings.lastseen_batch.max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.settings.lastseen_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekept = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        while move_batch(&ctx, &metrics, limit).await.context("The lastSeen mover failed")? == limit {}
        health.ok();
        if housekept.elapsed() >= HOUSEKEEPING_EVERY {
            housekept = tokio::time::Instant::now();
            housekeeping(&ctx.db).await;
        }
    }
}

/// Forgets old delivery claims and finished jobs.
async fn housekeeping(db: &sqlx::PgPool) {
    match crate::push::store::prune_deliveries(db).await {
        Ok(n) => tracing::debug!(n, "pruned push deliveries"),
        Err(e) => tracing::warn!(error = %e, "could not prune push deliveries"),
    }
    match queue::prune_finished(db).await {
        Ok(n) => tracing::debug!(n, "pruned finished jobs"),
        Err(e) => tracing::warn!(error = %e, "could not prune finished jobs"),
    }
}

/// Writes one batch; a time never moves backwards.
pub async fn write(db: &sqlx::PgPool, batch: &LastSeenBatch) -> sqlx::Result<u64> {
    let ids: Vec<UserId> = batch.entries.iter().map(|(id, _)| *id).collect();
    let times: Vec<DateTime<Utc>> = batch.entries.iter().map(|(_, ms)| DateTime::from_timestamp_millis(*ms).unwrap_or_default()).collect();
    let done = sqlx::query(
        "update users u set last_seen_at = v.at \
         from unnest($1::uuid[], $2::timestamptz[]) as v(id, at) \
         where u.id = v.id and (u.last_seen_at is null or u.last_seen_at < v.at)",
    )
    .bind(&ids)
    .bind(&times)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// What the lastSeen worker needs.
pub struct LastSeenWriter {
    pub ctx: AppContext,
    pub metrics: JobMetrics,
}

/// The apalis handler of the lastSeen queue.
pub async fn handle(batch: LastSeenBatch, writer: Data<Arc<LastSeenWriter>>, attempt: Attempt) -> Result<(), BoxDynError> {
    match write(&writer.ctx.db, &batch).await {
        Ok(updated) => {
            tracing::debug!(entries = batch.entries.len(), updated, "lastSeen batch written");
            JobMetrics::inc(&writer.metrics.succeeded, "lastseen");
            Ok(())
        }
        Err(e) => {
            let family = if attempt.current() >= MAX_ATTEMPTS { &writer.metrics.dead } else { &writer.metrics.retried };
            JobMetrics::inc(family, "lastseen");
            Err(e.into())
        }
    }
}
