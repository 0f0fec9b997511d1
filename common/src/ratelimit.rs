//! Token-bucket rate limits kept in Redis, so every node enforces the same budget.
//!
//! The bucket is updated by one Lua script using Redis' own clock, so nodes
//! with skewed clocks agree. When Redis is unreachable the limiter lets the
//! request through: refusing every send because Redis is down would turn a
//! cache outage into a messaging outage.
//!
//! A node takes tokens in small leases: up to a tenth of a second of the
//! rate at once (at most [`MAX_LEASE`]), spent locally until gone or
//! [`LEASE_TTL`] old, so most requests skip the Redis round trip. Leased
//! tokens have left the shared bucket, so the nodes together never admit
//! more than it issues; a lease another node holds can only make this one
//! refuse early, and for at most [`LEASE_TTL`]. With a rate below 20/s
//! every request asks Redis, exactly as without leases.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

/// Most tokens one lease takes.
pub const MAX_LEASE: u32 = 8;
/// How long a node may hold leased tokens before they are dropped.
pub const LEASE_TTL: Duration = Duration::from_secs(1);

/// Takes up to ARGV[3] whole tokens; returns {taken, ms until one is there}.
/// Tokens are kept in thousandths so the script works in integers.
static TOKEN_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local rate = tonumber(ARGV[1])   -- tokens per second
local burst = tonumber(ARGV[2]) * 1000
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local taken = math.min(want, math.floor(tokens / 1000))
local retry = 0
if taken > 0 then
  tokens = tokens - taken * 1000
else
  retry = math.ceil((1000 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', math.floor(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {taken, retry}
"#,
    )
});

/// A per-key token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Clone)]
pub struct RateLimiter {
    rate: u32,
    burst: u32,
    lease: u32,
    /// Tokens this node has leased and not yet spent, per key.
    leased: moka::future::Cache<String, Arc<AtomicU32>>,
}

/// What the limiter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a token will be there after this many milliseconds.
    Limited {
        retry_after_ms: u64,
    },
    /// Redis did not answer; the request was let through.
    Unchecked,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        let (rate, burst) = (rate.max(1), burst.max(1));
        RateLimiter {
            rate,
            burst,
            lease: (rate / 10).clamp(1, MAX_LEASE).min(burst),
            leased: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LEASE_TTL).build(),
        }
    }

    /// Takes one token for `key`: from this node's lease, else from the bucket in Redis.
    pub async fn check(&self, redis: &Pool, key: &str) -> Decision {
        if let Some(leased) = self.leased.get(key).await
            && leased.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
        {
            return Decision::Allowed;
        }
        let result: Result<(u32, i64), Error> = match crate::redis::connected(redis) {
            Some(client) => TOKEN_BUCKET.evalsha_with_reload(client, key, vec![self.rate, self.burst, self.lease]).await,
            None => Err(crate::redis::down()),
        };
        match result {
            Ok((taken, _)) if taken > 0 => {
                if taken > 1 {
                    let leased = self.leased.get_with(key.to_owned(), async { Arc::new(AtomicU32::new(0)) }).await;
                    leased.fetch_add(taken - 1, Ordering::AcqRel);
                }
                Decision::Allowed
            }
            Ok((_, ms)) => Decision::Limited { retry_after_ms: ms.max(1) as u64 },
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing");
                Decision::Unchecked
            }
        }
    }
}
