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
//! The relay is woken by the command side of its own process after each
//! commit that wrote events, and polls (`DUET_RELAY_POLL_MS`) for events
//! other processes wrote. There is no NOTIFY: PostgreSQL serializes the
//! commits of notifying transactions, which undid group commit.

use std::time::Duration;

use anyhow::Context;
use duet_common::AppContext;
use fred::prelude::*;
use fred::types::streams::XCap;
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
    // Woken with nothing to do (rows an earlier pass already took): one
    // indexed read, not a transaction. Ordered by id, so PostgreSQL walks the
    // small partial index of unpublished rows instead of scanning for a null.
    let pending: Option<i64> = sqlx::query_scalar("select id from outbox where published_at is null order by id limit 1")
        .fetch_optional(&ctx.db)
        .await
        .context("Failed to look for unpublished outbox rows")?;
    if pending.is_none() {
        return Ok(0);
    }
    // The mark need not be flushed before the relay goes on: if a crash loses
    // it, the rows are published again, and every consumer is idempotent.
    let mut tx = ctx
        .db
        .begin_with("begin; set local synchronous_commit = off")
        .await
        .context("Failed to begin the relay transaction")?;
    // Claimed and marked in one statement; the payload is passed on as
    // PostgreSQL's text, never decoded here.
    let mut rows: Vec<(i64, String)> = sqlx::query_as(
        "with claimed as ( \
           select id from outbox where published_at is null order by id limit $1 for update skip locked \
         ) \
         update outbox o set published_at = now() from claimed c where o.id = c.id \
         returning o.id, o.payload::text",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .context("Failed to claim outbox rows")?;
    if rows.is_empty() {
        return Ok(0);
    }
    rows.sort_unstable_by_key(|row| row.0);
    let stream = keys::stream(&ctx.keys);
    let pipeline = ctx.redis.next().pipeline();
    for (id, payload) in &rows {
        let cap: XCap = ("MAXLEN", "~", STREAM_MAXLEN, None).try_into()?;
        let fields = vec![("id", id.to_string()), ("event", payload.clone())];
        let _: () = pipeline.xadd(&stream, false, cap, "*", fields).await?;
    }
    // Published before the mark commits: a failure in between publishes
    // them again rather than never.
    let _: Vec<Value> = pipeline.all().await.context("Failed to XADD outbox events")?;
    tx.commit().await.context("Failed to commit the relay transaction")?;
    Ok(rows.len())
}

/// Runs until `stop` turns true.
pub async fn run(ctx: AppContext, metrics: ProjectorMetrics, batch: i64, poll: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        // Drain everything there is, then wait for a writer of this process
        // (a stored permit if one wrote meanwhile) or the next poll.
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
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = ctx.outbox_written.notified() => {}
        }
    }
}
