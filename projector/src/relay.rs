//! The relay: moves committed outbox rows onto the Redis stream.
//!
//! Outbox ids are not commit-ordered (a later id can commit first), so the
//! relay never keeps an "id > cursor" position. It claims unpublished rows
//! with `for update skip locked`, XADDs them, and marks them published in
//! the same transaction. A crash after XADD and before commit publishes
//! those rows again later: harmless, consumers are idempotent. Nothing is
//! lost: a committed row stays unpublished until a relay commits its mark.
//! Several relays run at once; `skip locked` gives each its own rows.
//!
//! The relay wakes on `NOTIFY duet_outbox` (sent by a trigger at commit)
//! and polls now and then in case a notification was missed.

use std::time::Duration;

use anyhow::Context;
use duet_common::AppContext;
use fred::prelude::*;
use fred::types::streams::XCap;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::keys;
use crate::metrics::ProjectorMetrics;

/// Approximate length the stream is trimmed to on every XADD. Other consumer
/// groups (push jobs) read the same stream, so this is deliberately large:
/// a group more than this many events behind loses the oldest (the
/// projections themselves can always be rebuilt from PostgreSQL).
pub const STREAM_MAXLEN: i64 = 1_000_000;

/// Publishes up to `batch` unpublished rows; returns how many.
pub async fn relay_once(ctx: &AppContext, batch: i64) -> anyhow::Result<usize> {
    let mut tx = ctx.db.begin().await.context("Failed to begin the relay transaction")?;
    let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "select id, payload from outbox where published_at is null order by id limit $1 for update skip locked",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .context("Failed to claim outbox rows")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let stream = keys::stream(&ctx.keys);
    let pipeline = ctx.redis.next().pipeline();
    for (id, payload) in &rows {
        let cap: XCap = ("MAXLEN", "~", STREAM_MAXLEN, None).try_into()?;
        let fields = vec![("id", id.to_string()), ("event", payload.to_string())];
        let _: () = pipeline.xadd(&stream, false, cap, "*", fields).await?;
    }
    let _: Vec<Value> = pipeline.all().await.context("Failed to XADD outbox events")?;
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    sqlx::query("update outbox set published_at = now() where id = any($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .context("Failed to mark outbox rows published")?;
    tx.commit().await.context("Failed to commit the relay transaction")?;
    Ok(rows.len())
}

/// Runs until `stop` turns true.
pub async fn run(ctx: AppContext, metrics: ProjectorMetrics, batch: i64, poll: Duration, mut stop: watch::Receiver<bool>) {
    let mut listener = None;
    while !*stop.borrow() {
        if listener.is_none() {
            listener = listen(&ctx).await;
        }
        // Drain everything there is, then wait for a notification.
        loop {
            match relay_once(&ctx, batch).await {
                Ok(n) => {
                    metrics.relayed.inc_by(n as u64);
                    if (n as i64) < batch {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "outbox relay failed; retrying");
                    break;
                }
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()).map_err(|e| e.to_string()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(poll) => {}
            outcome = notified => {
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "outbox listener failed; polling until it reconnects");
                    listener = None;
                }
            }
        }
    }
}

async fn listen(ctx: &AppContext) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(&ctx.db).await.ok()?;
    listener.listen("duet_outbox").await.ok()?;
    Some(listener)
}
