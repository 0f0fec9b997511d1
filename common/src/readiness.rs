//! `/readyz`: whether this node should get traffic.
//!
//! Ready when PostgreSQL answers and no supervised component (see
//! [`crate::supervise`]) has been unhealthy for longer than
//! `DUET_COMPONENT_DOWN_READY_MS`. Redis being down does not make a node
//! unready: chat works on PostgreSQL alone (see docs/architecture.md), and
//! while Redis is down the components that need it are not counted either,
//! since another node would fare no better. Each probe has a short deadline,
//! so a hung dependency makes `/readyz` answer "no" quickly instead of not
//! at all.

use std::time::Duration;

use serde_json::{Value, json};

use crate::context::AppContext;

/// How long each dependency probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Whether the node is ready, and the body `/readyz` answers.
pub async fn check(ctx: &AppContext) -> (bool, Value) {
    let postgres = async { matches!(tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("select 1").execute(&ctx.db)).await, Ok(Ok(_))) };
    // Through the breaker, with the short deadline: a stuck Redis must not hang readiness checks.
    let redis = ctx.fast_redis.ping();
    let (postgres, redis) = tokio::join!(postgres, redis);
    let limit = Duration::from_millis(ctx.settings.component_down_ready_ms);
    let mut components = serde_json::Map::new();
    let mut components_ready = true;
    for (name, health) in ctx.components.report() {
        if health.down_for > limit && (redis || !health.needs_redis) {
            components_ready = false;
        }
        components.insert(
            name.to_owned(),
            json!({"healthy": health.healthy, "restarts": health.restarts, "downForMs": health.down_for.as_millis() as u64}),
        );
    }
    let ready = postgres && components_ready;
    (ready, json!({"ready": ready, "postgres": postgres, "redis": redis, "components": components}))
}
