//! Redis connections (fred); the keys are in [`crate::keys`].
//!
//! Redis holds only what can be rebuilt or lost: presence, fan-out, rate
//! limits and projections. Clients fail fast while Redis is down, so callers
//! can degrade (presence `unknown`, sends still stored) instead of hanging.

use std::time::Duration;

use anyhow::Context;
use fred::prelude::*;

/// Builds and starts connecting a client pool; returns at once even if Redis is down.
pub async fn connect(url: &str, size: usize) -> anyhow::Result<Pool> {
    let pool = builder(url)?.build_pool(size).context("Failed to build the Redis pool")?;
    let _ = pool.connect_pool();
    // Give a healthy Redis a moment so the first requests find it connected.
    let _ = tokio::time::timeout(Duration::from_secs(2), pool.wait_for_connect()).await;
    Ok(pool)
}

/// A pooled client if Redis is connected right now. While Redis is down,
/// callers skip it at once (and degrade) instead of waiting for timeouts.
pub fn connected(pool: &Pool) -> Option<&Client> {
    let client = pool.next();
    client.is_connected().then_some(client)
}

/// The error callers log when Redis is down.
pub fn down() -> Error {
    Error::new(ErrorKind::IO, "Redis is not connected")
}

fn builder(url: &str) -> anyhow::Result<Builder> {
    let mut config = Config::from_url(url).context("Failed to parse REDIS_URL")?;
    config.fail_fast = true;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| {
            perf.default_command_timeout = Duration::from_secs(2);
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_secs(2);
            conn.internal_command_timeout = Duration::from_secs(2);
            conn.max_command_attempts = 1;
            // Frames of several KiB must not wait for Nagle and delayed ACKs.
            conn.tcp.nodelay = Some(true);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    Ok(builder)
}

/// Whether Redis, set to `maxmemory` bytes under `policy`, may evict single
/// keys. Duet can lose all of Redis (it notices and rebuilds the projections
/// from PostgreSQL), but not some keys: an evicted unread set, stream or
/// presence key leaves the rest wrong, and nothing would notice.
pub fn eviction_risk(maxmemory: u64, policy: &str) -> bool {
    maxmemory > 0 && policy != "noeviction"
}

/// Warns at start-up when Redis may evict keys (see [`eviction_risk`]).
/// Quiet when Redis is down or refuses `CONFIG` (some managed services do).
pub async fn warn_if_evicting(pool: &Pool) {
    let Some(client) = connected(pool) else { return };
    let command = fred::types::CustomCommand::new_static("CONFIG", None, false);
    let reply: Result<Vec<String>, Error> = client.custom(command, vec!["GET", "maxmemory*"]).await;
    let Ok(reply) = reply else { return };
    let setting = |name: &str| reply.chunks(2).find(|pair| pair[0] == name).and_then(|pair| pair.get(1)).cloned();
    let maxmemory = setting("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
    let policy = setting("maxmemory-policy").unwrap_or_default();
    if eviction_risk(maxmemory, &policy) {
        tracing::warn!(
            maxmemory,
            policy,
            "Redis may evict keys under memory pressure: set maxmemory-policy noeviction (or maxmemory 0), \
             or keys Duet relies on (projections, the event stream, presence) can silently vanish"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::eviction_risk;

    #[test]
    fn only_a_memory_limit_with_an_evicting_policy_is_a_risk() {
        assert!(!eviction_risk(0, "allkeys-lru"), "no limit, nothing is evicted");
        assert!(!eviction_risk(1 << 30, "noeviction"), "writes fail instead");
        assert!(eviction_risk(1 << 30, "allkeys-lru"));
        assert!(eviction_risk(1 << 30, "volatile-ttl"), "presence keys and rate limits have a TTL");
    }
}
