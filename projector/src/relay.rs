//! The relay: moves committed outbox rows onto the Redis stream.
//!
//! Outbox ids are not commit-ordered (a later id can commit first), so "up
//! to id N" is no position. Each row also carries the id of the transaction
//! that wrote it (`txid`), and a row is taken only once every transaction
//! that could still write one below it has ended (`txid` below the snapshot's
//! xmin). In (txid, id) order nothing can then commit behind the position, so
//! the relay keeps one row, `relay_position`, instead of marking each event
//! (migrations/0007_relay_position.sql).
//!
//! A pass takes a transaction-level advisory lock (several relays run, one
//! pass at a time), reads up to a batch past the position, XADDs each event
//! to its conversation's stream shard (`events:{n}`, see
//! [`duet_common::keys::stream_shard`]) in order, and moves the position. A crash after XADD and before commit publishes those
//! rows again: harmless, consumers are idempotent. Nothing is lost: the
//! position only moves past rows that were published.
//!
//! The relay is woken by the command side of its own process after each
//! commit that wrote events, and polls (`DUET_RELAY_POLL_MS`) for events
//! other processes wrote. There is no NOTIFY: PostgreSQL serializes the
//! commits of notifying transactions, which undid group commit. Rows held
//! back by a transaction still running are retried soon (see [`run`]): that
//! transaction may belong to another process, or write no event at all.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use duet_common::AppContext;
use duet_common::ids::ConversationId;
use duet_common::keys::stream_shard;
use duet_common::supervise::Health;
use fred::types::scripts::Script;
use tokio_util::sync::CancellationToken;

use crate::metrics::ProjectorMetrics;

/// Approximate length each stream shard is trimmed to on every XADD. Other consumer
/// groups (push jobs) read the same stream, so this is deliberately large:
/// a group more than this many events behind loses the oldest (the
/// projections themselves can always be rebuilt from PostgreSQL).
pub const STREAM_MAXLEN: i64 = 1_000_000;

/// XADDs each (outbox id, event) in order: KEYS = [stream]; ARGV = [maxlen,
/// id, event, id, event, ...]. Returns how many.
static XADD_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'id', ARGV[i], 'event', ARGV[i + 1])
end
return (#ARGV - 1) / 2
"#,
    )
});

/// Most events in one script call: Redis runs nothing else meanwhile.
const XADDS_PER_CALL: usize = 64;

/// The SQL condition "this outbox row `o` is past the relay's position". A
/// subquery, not a join: PostgreSQL then walks the (txid, id) index from it
/// instead of scanning the outbox. (A macro, so the queries stay literals.)
macro_rules! past_position {
    () => {
        "(o.txid, o.id) > (select txid, outbox_id from relay_position)"
    };
}

/// What is past the relay's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backlog {
    Empty,
    /// Rows the relay can take now.
    Ready,
    /// Only rows of transactions that ended after one still running began.
    HeldBack,
}

/// One indexed read: is there anything to relay?
pub async fn backlog(ctx: &AppContext) -> anyhow::Result<Backlog> {
    let first: Option<bool> = sqlx::query_scalar(concat!(
        "select o.txid < pg_snapshot_xmin(pg_current_snapshot()) from outbox o where ",
        past_position!(),
        " order by o.txid, o.id limit 1"
    ))
    .fetch_optional(&ctx.db)
    .await
    .context("Failed to look for unrelayed outbox rows")?;
    Ok(match first {
        None => Backlog::Empty,
        Some(true) => Backlog::Ready,
        Some(false) => Backlog::HeldBack,
    })
}

/// Publishes up to `batch` rows past the position if any are ready; returns how many.
pub async fn relay_once(ctx: &AppContext, batch: i64) -> anyhow::Result<usize> {
    match backlog(ctx).await? {
        Backlog::Ready => publish_batch(ctx, batch).await,
        Backlog::Empty | Backlog::HeldBack => Ok(0),
    }
}

/// An outbox row as the relay reads it: id, payload (PostgreSQL's text), txid, conversation.
type OutboxRow = (i64, String, String, Option<ConversationId>);

/// Publishes up to `batch` rows past the position; returns how many.
async fn publish_batch(ctx: &AppContext, batch: i64) -> anyhow::Result<usize> {
    // The position need not be flushed before the relay goes on: if a crash
    // loses it, the rows are published again, and every consumer is idempotent.
    let mut tx = ctx
        .db
        // One pass at a time across relays: a transaction-level advisory lock
        // (the key is "duetrela" in ASCII).
        .begin_with("begin; set local synchronous_commit = off; select pg_advisory_xact_lock(7238803526877801569)")
        .await
        .context("Failed to begin the relay transaction")?;
    // Read after the lock, in a statement of its own: its snapshot sees the
    // position the previous holder committed. Only rows whose writers, and
    // every transaction that could still write below them, have ended. The
    // payload is passed on as PostgreSQL's text, never decoded here.
    let rows: Vec<OutboxRow> = sqlx::query_as(concat!(
        "select o.id, o.payload::text, o.txid::text, o.conversation_id from outbox o where ",
        past_position!(),
        " and o.txid < pg_snapshot_xmin(pg_current_snapshot()) order by o.txid, o.id limit $1"
    ))
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .context("Failed to read outbox rows")?;
    let Some((last_id, _, last_txid, _)) = rows.last() else {
        return Ok(0);
    };
    // Each shard's events in order, one script call per chunk (a call costs
    // a round trip and a syscall pair on each side, far more than an XADD);
    // the shards concurrently (in a cluster, on their own masters).
    let shards = ctx.settings.stream_shards;
    let mut by_shard: BTreeMap<u16, Vec<&OutboxRow>> = BTreeMap::new();
    for row in &rows {
        by_shard.entry(stream_shard(row.3, shards)).or_default().push(row);
    }
    let publishes = by_shard.into_iter().map(|(shard, rows)| async move {
        let stream = ctx.keys.events(shard);
        let client = ctx.redis.next();
        for chunk in rows.chunks(XADDS_PER_CALL) {
            let mut args = Vec::with_capacity(1 + 2 * chunk.len());
            args.push(STREAM_MAXLEN.to_string());
            for (id, payload, _, _) in chunk {
                args.push(id.to_string());
                args.push(payload.clone());
            }
            // Published before the position commits: a failure in between
            // publishes them again rather than never.
            let _: i64 = XADD_ALL.evalsha_with_reload(client, vec![stream.clone()], args).await.context("Failed to XADD outbox events")?;
        }
        anyhow::Ok(())
    });
    futures_util::future::try_join_all(publishes).await?;
    sqlx::query("update relay_position set txid = $1::xid8, outbox_id = $2")
        .bind(last_txid)
        .bind(last_id)
        .execute(&mut *tx)
        .await
        .context("Failed to move the relay position")?;
    tx.commit().await.context("Failed to commit the relay transaction")?;
    Ok(rows.len())
}

/// The rows past the position (relayable or held back) and when the oldest was written.
pub async fn unrelayed(db: &sqlx::PgPool) -> anyhow::Result<(i64, Option<chrono::DateTime<chrono::Utc>>)> {
    let found = sqlx::query_as(concat!("select count(*), min(o.created_at) from outbox o where ", past_position!()))
        .fetch_one(db)
        .await
        .context("Failed to count unrelayed outbox rows")?;
    Ok(found)
}

/// Moves the position back to the start, so every event is published again;
/// returns how many that is. Tests use it to re-drive the idempotent consumers.
/// One statement: a running relay may move the position on at once, and a
/// count taken after that would miss what it republished.
pub async fn rewind(db: &sqlx::PgPool) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "with moved as (update relay_position set txid = '0', outbox_id = 0 returning 1) \
         select count(*) from outbox o, moved where (o.txid, o.id) > ('0'::xid8, 0)",
    )
    .fetch_one(db)
    .await?;
    Ok(count as u64)
}

/// Least time between the starts of two drains. Every commit of this
/// process wakes the relay, and a pass is four round trips however few rows
/// it moves: under load, waking at most this often lets each pass carry the
/// events of many commits. An idle relay drains at once. Projections and
/// push decisions wait for the relay; live delivery does not.
const DRAIN_SPACING: Duration = Duration::from_millis(10);

/// Runs until `stop` is cancelled; returns the first error (its supervisor
/// restarts it).
pub async fn run(
    ctx: AppContext,
    metrics: ProjectorMetrics,
    batch: i64,
    poll: Duration,
    health: Health,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut retry = DRAIN_SPACING;
    let mut next_drain = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => continue,
            _ = tokio::time::sleep_until(next_drain) => {}
        }
        next_drain = tokio::time::Instant::now() + DRAIN_SPACING;
        // Drain everything there is, then wait for a writer of this process
        // (a stored permit if one wrote meanwhile) or the next poll. Rows held
        // back by a running transaction are retried sooner, backing off up to
        // the poll while it runs on.
        let pause = match drain(&ctx, &metrics, batch).await? {
            Backlog::HeldBack => {
                let pause = retry;
                retry = (retry * 2).min(poll);
                pause
            }
            Backlog::Empty | Backlog::Ready => {
                retry = DRAIN_SPACING;
                poll
            }
        };
        health.ok();
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.outbox_written.notified() => {}
        }
    }
    Ok(())
}

/// Publishes until nothing is ready; returns what is left.
async fn drain(ctx: &AppContext, metrics: &ProjectorMetrics, batch: i64) -> anyhow::Result<Backlog> {
    loop {
        let left = backlog(ctx).await?;
        if left != Backlog::Ready {
            return Ok(left);
        }
        metrics.relayed.inc_by(publish_batch(ctx, batch).await? as u64);
    }
}
