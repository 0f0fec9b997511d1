//! Consumer groups on the event stream.
//!
//! The projector's relay moves committed outbox rows onto the Redis event
//! stream, sharded: `events:{n}` for n below `DUET_STREAM_SHARDS`, one
//! conversation's events all in one shard, in order ([`crate::keys::stream_shard`]).
//! Every service that reacts to events reads every shard in a consumer
//! group of its own: the projections (`projector`) and the push triggers
//! (`push`). Within a group, the processes running it share the entries.
//! Each shard is read by a loop of its own, on a connection of its own (one
//! XREADGROUP per shard: a read of several streams would span cluster
//! slots), and acknowledged in its own stream.
//!
//! Upgrade from the unsharded stream (`events`): while that key exists, the
//! groups read it too, from where they were, until nothing is left in it
//! for them; after that it is read no more (delete it once every group has
//! drained it). Nothing written before the upgrade is skipped.
//!
//! An entry is acknowledged only after its handler succeeded. Entries a
//! crashed consumer left pending are taken over with XAUTOCLAIM once idle
//! for `claim_idle`, and a consumer restarted under the same name first
//! re-reads its own pending entries. Handlers must therefore be idempotent:
//! every failure mode re-delivers rather than drops. A failed read or batch
//! ends the consumer's run, and its supervisor restarts it with backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::AppContext;
use crate::supervise::{Health, supervise};

/// One stream entry: its id and the outbox event it carries (None if the
/// entry was trimmed away while pending).
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub event: Option<String>,
}

/// How one consumer of a group behaves.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// This consumer's name in its group; reuse it after a restart to pick
    /// up one's own pending entries at once.
    pub name: String,
    /// Entries read per call.
    pub batch: u64,
    /// How long an entry stays pending before another consumer claims it.
    pub claim_idle: Duration,
    /// Least time between the starts of two reads that found entries
    /// already waiting, but less than a full batch. A busy consumer handles
    /// fewer, larger batches (each read, acknowledgement and handler call has
    /// a cost of its own, and a batch's events can share their Redis calls);
    /// an idle one, whose read had to wait, handles an event as soon as it
    /// comes, and a backlog is read back to back.
    pub spacing: Duration,
}

/// What a group does with the entries it reads. Called with one batch at a
/// time; on `Err` the batch stays pending and is handled again.
pub trait EventHandler: Send + Sync {
    fn handle(&self, entries: &[Entry]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Creates `group` on `stream` (reading from its start) if it does not
/// exist; `create_stream`: also the stream itself if it does not.
pub async fn ensure_group(client: &Client, stream: &str, group: &str, create_stream: bool) -> anyhow::Result<()> {
    let result: Result<(), Error> = client.xgroup_create(stream, group, "0", create_stream).await;
    match result {
        Err(e) if !e.details().contains("BUSYGROUP") => Err(e).context("Failed to create the consumer group"),
        _ => Ok(()),
    }
}

/// Where a consumer is in its loop.
struct State {
    /// Reading our own pending entries ("0") rather than new ones (">").
    from_pending: bool,
    last_claim: Instant,
}

/// Runs one consumer of `group` under supervision (see [`crate::supervise`]),
/// reported as `component`, until `stop` is cancelled. `reader`: see [`run`].
pub async fn supervised<H: EventHandler>(
    ctx: AppContext,
    reader: Pool,
    group: &'static str,
    component: &'static str,
    config: ConsumerConfig,
    handler: H,
    stop: CancellationToken,
) {
    let handler = Arc::new(handler);
    let health = ctx.components.register(component, true);
    supervise(health, stop.clone(), |health| run(ctx.clone(), reader.clone(), group, config.clone(), handler.clone(), health, stop.clone()))
        .await
}

/// Clients a consumer's `reader` pool needs: one per stream it may read
/// (every shard, and the unsharded stream of earlier versions).
pub fn reader_size(ctx: &AppContext) -> usize {
    usize::from(ctx.settings.stream_shards) + 1
}

/// Reads `group` on every shard and hands each batch to `handler` until
/// `stop` is cancelled; returns the first error (the supervisor restarts
/// it, and a restarted consumer first re-reads its own pending entries).
/// `reader` has connections of its own ([`reader_size`] clients): a
/// blocking XREADGROUP would stall every command queued behind it.
pub async fn run(
    ctx: AppContext,
    reader: Pool,
    group: &'static str,
    config: ConsumerConfig,
    handler: Arc<impl EventHandler>,
    health: Health,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let clients = reader.clients();
    let client = |i: usize| &clients[i % clients.len()];
    let unsharded = ctx.keys.unsharded_events();
    let upgrading = ctx.redis.next().exists::<i64, _>(unsharded.as_str()).await.context("Failed to look for the unsharded stream")? == 1;
    let shards = ctx.keys.event_streams(ctx.settings.stream_shards);
    let count = shards.len();
    let mut loops: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(i, stream)| run_stream(&ctx, client(i), group, stream, Until::Stopped, &config, handler.as_ref(), &health, &stop))
        .collect();
    if upgrading {
        loops.push(run_stream(&ctx, client(count), group, unsharded, Until::Drained, &config, handler.as_ref(), &health, &stop));
    }
    futures_util::future::try_join_all(loops).await?;
    Ok(())
}

/// How many entries of `stream` the group's consumers hold unacknowledged.
async fn pending(ctx: &AppContext, stream: &str, group: &str) -> anyhow::Result<u64> {
    // XPENDING summary: [count, smallest id, greatest id, consumers]
    let summary: Value = ctx.redis.next().xpending(stream, group, ()).await?;
    Ok(summary.into_array().first().and_then(|count| count.as_u64()).unwrap_or(0))
}

/// When a stream's loop ends (besides a stop or a failure).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Stopped,
    /// Nothing is left for the group: the unsharded stream of earlier versions.
    Drained,
}

/// One stream's loop of [`run`].
#[allow(clippy::too_many_arguments)]
async fn run_stream(
    ctx: &AppContext,
    reader: &Client,
    group: &str,
    stream: String,
    until: Until,
    config: &ConsumerConfig,
    handler: &impl EventHandler,
    health: &Health,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    // Also after Redis lost the stream or its group: recreated from the
    // stream's start (handling twice is harmless). The unsharded stream is
    // never created: it only exists from before the upgrade.
    ensure_group(ctx.redis.next(), &stream, group, until == Until::Stopped).await?;
    let mut state = State { from_pending: true, last_claim: Instant::now() };
    let mut last_prune = Instant::now();
    while !stop.is_cancelled() {
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Err(e) = forget_idle_in(ctx, &stream, group, FORGET_IDLE).await {
                tracing::debug!(group, stream = %stream, error = format!("{e:#}"), "could not prune idle consumers");
            }
        }
        // Never interrupted mid-step: a graceful stop acknowledges what it
        // read (a read blocks for at most a second).
        let started = Instant::now();
        let Read { count, waited } = step(ctx, reader, group, &stream, config, handler, &mut state)
            .await
            .with_context(|| format!("The {group} consumer of {stream} failed"))?;
        health.ok();
        if until == Until::Drained && waited && count == 0 && pending(ctx, &stream, group).await? == 0 {
            tracing::info!(group, stream = %stream, "the unsharded event stream is drained for this group");
            return Ok(());
        }
        if !waited && count > 0 && (count as u64) < config.batch {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep_until((started + config.spacing).into()) => {}
            }
        }
    }
    Ok(())
}

/// What one step read.
struct Read {
    count: usize,
    /// Nothing was waiting: the read blocked until an entry came (or a second passed).
    waited: bool,
}

async fn step(
    ctx: &AppContext,
    reader: &Client,
    group: &str,
    stream: &str,
    config: &ConsumerConfig,
    handler: &impl EventHandler,
    state: &mut State,
) -> anyhow::Result<Read> {
    if state.last_claim.elapsed() >= config.claim_idle / 2 {
        state.last_claim = Instant::now();
        let claimed = claim(ctx, group, stream, config).await?;
        handle(ctx, group, stream, handler, claimed).await?;
    }
    let id = if state.from_pending { "0" } else { ">" };
    let read = |block| reader.xreadgroup::<Value, _, _, _, _>(group, config.name.as_str(), Some(config.batch), block, false, stream, id);
    // What is waiting first; only when nothing is, block for what comes next.
    let mut entries = parse_read(read(None).await?)?;
    let waited = entries.is_empty() && !state.from_pending;
    if waited {
        entries = parse_read(read(Some(1000)).await?)?;
    }
    if state.from_pending && entries.is_empty() {
        state.from_pending = false;
    }
    let count = entries.len();
    handle(ctx, group, stream, handler, entries).await?;
    Ok(Read { count, waited })
}

/// Takes over entries pending longer than `claim_idle` in any consumer.
async fn claim(ctx: &AppContext, group: &str, stream: &str, config: &ConsumerConfig) -> anyhow::Result<Vec<Entry>> {
    let idle = config.claim_idle.as_millis() as u64;
    let value: Value = ctx.redis.next().xautoclaim(stream, group, config.name.as_str(), idle, "0-0", Some(config.batch), false).await?;
    // [next start, entries, deleted ids]
    let mut parts = value.into_array().into_iter();
    let entries = parts.nth(1).map(parse_entries).transpose()?.unwrap_or_default();
    if !entries.is_empty() {
        tracing::info!(group, count = entries.len(), "claimed pending events of a stalled consumer");
    }
    Ok(entries)
}

/// Hands `entries` to the handler, then acknowledges them.
async fn handle(ctx: &AppContext, group: &str, stream: &str, handler: &impl EventHandler, entries: Vec<Entry>) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    handler.handle(&entries).await?;
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let _: i64 = ctx.redis.next().xack(stream, group, ids).await?;
    Ok(())
}

/// Parses an XREADGROUP reply; nil (a timed-out BLOCK) is no entries.
pub fn parse_read(value: Value) -> anyhow::Result<Vec<Entry>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for stream in value.into_array() {
        // RESP2: [key, entries]
        let mut parts = stream.into_array().into_iter();
        if let Some(list) = parts.nth(1) {
            entries.extend(parse_entries(list)?);
        }
    }
    Ok(entries)
}

/// `[[id, [field, value, ...] | nil], ...]`
fn parse_entries(value: Value) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in value.into_array() {
        let mut parts = item.into_array().into_iter();
        let id = parts.next().and_then(|v| v.as_string()).context("stream entry without id")?;
        let mut event = None;
        if let Some(fields) = parts.next() {
            let fields = fields.into_array();
            for pair in fields.chunks(2) {
                if pair.len() == 2 && pair[0].as_string().as_deref() == Some("event") {
                    event = pair[1].as_string();
                }
            }
        }
        entries.push(Entry { id, event });
    }
    Ok(entries)
}

/// Consumers idle this long with nothing pending are forgotten.
pub const FORGET_IDLE: Duration = Duration::from_secs(3600);

/// How often each consumer looks for idle ones to forget.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Removes consumers of crashed or retired processes from `group` on every
/// shard (each process has its own name, so the group would otherwise
/// collect them forever). Only ones with nothing pending: their work is
/// never dropped.
pub async fn forget_idle_consumers(ctx: &AppContext, group: &str, idle_for: Duration) -> anyhow::Result<usize> {
    let mut forgotten = 0;
    for stream in ctx.keys.event_streams(ctx.settings.stream_shards) {
        forgotten += forget_idle_in(ctx, &stream, group, idle_for).await?;
    }
    Ok(forgotten)
}

/// [`forget_idle_consumers`] on one stream.
async fn forget_idle_in(ctx: &AppContext, stream: &str, group: &str, idle_for: Duration) -> anyhow::Result<usize> {
    let client = ctx.redis.next();
    let consumers: Value = client.xinfo_consumers(stream, group).await?;
    let mut forgotten = 0;
    for consumer in consumers.into_array() {
        let fields = consumer.into_array();
        let field = |name: &str| fields.chunks(2).find(|p| p[0].as_string().as_deref() == Some(name)).and_then(|p| p.get(1).cloned());
        let (Some(name), Some(pending), Some(idle)) =
            (field("name").and_then(|v| v.as_string()), field("pending").and_then(|v| v.as_u64()), field("idle").and_then(|v| v.as_u64()))
        else {
            continue;
        };
        if pending == 0 && idle >= idle_for.as_millis() as u64 {
            let _: i64 = client.xgroup_delconsumer(stream, group, name.as_str()).await?;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}
