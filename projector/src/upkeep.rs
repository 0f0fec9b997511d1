//! Outbox upkeep: the outbox is partitioned by id
//! (migrations/0016_partitioned_history.sql). Every pass makes the
//! partitions ahead of the ids (so rows never pile up in the DEFAULT
//! partition) and, when a retention is set, drops whole partitions that the
//! relay has published and that are older than it. Dropping a partition is
//! a `drop table`: no DELETE, no dead tuples for vacuum.
//!
//! The work is one call of `duet_outbox_maintain`, which serializes itself
//! across processes with an advisory lock; every projector process runs it.

use std::time::Duration;

use anyhow::Context;
use duet_common::AppContext;
use duet_common::supervise::Health;
use sqlx::postgres::types::PgInterval;
use tokio_util::sync::CancellationToken;

/// One pass: what it created and dropped, as (action, partition).
pub async fn maintain(db: &sqlx::PgPool, retention: Option<Duration>) -> anyhow::Result<Vec<(String, String)>> {
    let keep = retention.map(PgInterval::try_from).transpose().map_err(|e| anyhow::anyhow!("outbox retention out of range: {e}"))?;
    // Its own transaction: a drop's lock_timeout stays in it.
    let mut tx = db.begin().await.context("Failed to begin the outbox upkeep")?;
    let done = sqlx::query_as("select action, partition_name from duet_outbox_maintain($1)")
        .bind(keep)
        .fetch_all(&mut *tx)
        .await
        .context("Failed to keep up the outbox partitions")?;
    tx.commit().await.context("Failed to commit the outbox upkeep")?;
    Ok(done)
}

/// Runs a pass every `every` until `stop` is cancelled; returns the first
/// error (its supervisor restarts it).
pub async fn run(
    ctx: AppContext,
    every: Duration,
    retention: Option<Duration>,
    health: Health,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    while !stop.is_cancelled() {
        for (action, partition) in maintain(&ctx.db, retention).await? {
            tracing::info!(%action, %partition, "outbox partition");
        }
        health.ok();
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
    Ok(())
}
