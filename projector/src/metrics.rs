//! The projector's metrics, and its lag as `/metrics` shows it.
//!
//! Lag has two parts: outbox rows not yet relayed, and stream entries the
//! `projector` group has not yet applied (never delivered, or delivered
//! and not yet acknowledged). The oldest pending age is the age of the
//! oldest event in either place; 0 when caught up.

use std::sync::atomic::AtomicU64;

use chrono::Utc;
use duet_common::AppContext;
use fred::prelude::*;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::consumer::GROUP;

#[derive(Clone, Default)]
pub struct ProjectorMetrics {
    pub relayed: Counter,
    pub applied: Counter,
    pub undecodable: Counter,
    pub rebuilds: Counter,
    pub events_behind: Gauge,
    pub oldest_pending_age: Gauge<f64, AtomicU64>,
}

impl ProjectorMetrics {
    pub fn register(ctx: &AppContext) -> Self {
        let m = ProjectorMetrics::default();
        let r = &ctx.metrics;
        r.register("projector_events_relayed", "Outbox events published to the stream", m.relayed.clone());
        r.register("projector_events_applied", "Stream events applied to the projections", m.applied.clone());
        r.register("projector_events_undecodable", "Events skipped because they could not be decoded", m.undecodable.clone());
        r.register("projector_rebuilds", "Projection rebuilds from PostgreSQL", m.rebuilds.clone());
        r.register(
            "projector_events_behind",
            "Events committed but not yet applied (unrelayed outbox rows + undelivered and unacknowledged stream entries)",
            m.events_behind.clone(),
        );
        r.register(
            "projector_oldest_pending_age_seconds",
            "Age of the oldest event not yet applied; 0 when caught up",
            m.oldest_pending_age.clone(),
        );
        m
    }

    /// Measures the lag now and updates the gauges.
    pub async fn refresh(&self, ctx: &AppContext) -> anyhow::Result<Lag> {
        let lag = measure(ctx).await?;
        self.events_behind.set(lag.events_behind as i64);
        self.oldest_pending_age.set(lag.oldest_pending_age_secs);
        Ok(lag)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    pub unrelayed: u64,
    pub undelivered: u64,
    pub unacked: u64,
    pub events_behind: u64,
    pub oldest_pending_age_secs: f64,
}

/// The projector's lag behind PostgreSQL.
/// Most entries counted when Redis cannot report a group's lag.
const UNKNOWN_LAG_SCAN: u64 = 10_000;

pub async fn measure(ctx: &AppContext) -> anyhow::Result<Lag> {
    let (unrelayed, oldest_unrelayed) = crate::relay::unrelayed(&ctx.db).await?;
    let mut oldest_ms: Option<i64> = oldest_unrelayed.map(|t| t.timestamp_millis());
    let (mut undelivered, mut unacked) = (0, 0);
    for stream in ctx.keys.event_streams(ctx.settings.stream_shards) {
        let shard = shard_lag(ctx, &stream).await;
        undelivered += shard.undelivered;
        unacked += shard.unacked;
        if let Some(ms) = shard.oldest_ms {
            oldest_ms = Some(oldest_ms.map_or(ms, |o| o.min(ms)));
        }
    }
    let now_ms = Utc::now().timestamp_millis();
    let age = oldest_ms.map(|ms| (now_ms - ms).max(0) as f64 / 1000.0).unwrap_or(0.0);
    Ok(Lag {
        unrelayed: unrelayed as u64,
        undelivered,
        unacked,
        events_behind: unrelayed as u64 + undelivered + unacked,
        oldest_pending_age_secs: age,
    })
}

/// The projector group's lag on one stream shard.
struct ShardLag {
    undelivered: u64,
    unacked: u64,
    /// When the oldest entry not yet acknowledged was added (unix ms).
    oldest_ms: Option<i64>,
}

async fn shard_lag(ctx: &AppContext, stream: &str) -> ShardLag {
    let client = ctx.redis.next();
    let groups: Value = client.xinfo_groups(stream).await.unwrap_or(Value::Null);
    let mut undelivered = 0;
    let mut unacked = 0;
    let mut last_delivered = String::from("0-0");
    let mut group_found = false;
    for group in groups.into_array() {
        let fields = group.into_array();
        let field = |name: &str| fields.chunks(2).find(|p| p[0].as_string().as_deref() == Some(name)).and_then(|p| p.get(1).cloned());
        if field("name").and_then(|v| v.as_string()).as_deref() != Some(GROUP) {
            continue;
        }
        group_found = true;
        unacked = field("pending").and_then(|v| v.as_u64()).unwrap_or(0);
        last_delivered = field("last-delivered-id").and_then(|v| v.as_string()).unwrap_or(last_delivered);
        undelivered = match field("lag").and_then(|v| v.as_u64()) {
            Some(lag) => lag,
            // Redis reports no lag when it cannot tell (a group created on a
            // stream that already had entries): count what lies past the
            // group's position instead of calling it zero.
            None => {
                let after: Value =
                    client.xrange(stream, format!("({last_delivered}"), "+", Some(UNKNOWN_LAG_SCAN)).await.unwrap_or(Value::Null);
                after.into_array().len() as u64
            }
        };
    }
    if !group_found {
        // No group (yet, or Redis lost it): everything in the stream is unread.
        undelivered = client.xlen(stream).await.unwrap_or(0);
    }
    let mut oldest_ms = None;
    // The oldest unacknowledged entry, and the first never delivered.
    let pending: Value = client.xpending(stream, GROUP, ()).await.unwrap_or(Value::Null);
    if let Some(id) = pending.into_array().get(1).and_then(|v| v.as_string()) {
        oldest_ms = min_ms(oldest_ms, &id);
    }
    if undelivered > 0 {
        let next: Value = client.xrange(stream, format!("({last_delivered}"), "+", Some(1)).await.unwrap_or(Value::Null);
        if let Some(id) = next.into_array().first().and_then(|e| e.clone().into_array().first().and_then(|v| v.as_string())) {
            oldest_ms = min_ms(oldest_ms, &id);
        }
    }
    ShardLag { undelivered, unacked, oldest_ms }
}

/// Stream ids start with their unix milliseconds.
fn min_ms(current: Option<i64>, id: &str) -> Option<i64> {
    let ms = id.split('-').next().and_then(|ms| ms.parse::<i64>().ok());
    match (current, ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
