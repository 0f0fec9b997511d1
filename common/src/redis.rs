//! Redis connections (fred) and key naming.
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

/// A dedicated client for pub/sub subscriptions.
pub fn subscriber(url: &str) -> anyhow::Result<fred::clients::SubscriberClient> {
    builder(url)?.build_subscriber_client().context("Failed to build the Redis subscriber")
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

/// Names of Redis keys and channels under the deployment's prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Any key under the prefix.
    pub fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}{}", self.prefix, rest)
    }
}
