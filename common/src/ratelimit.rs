//! Token-bucket rate limits kept in Redis, so every node enforces the same budget.
//!
//! The bucket is updated by one Lua script using Redis' own clock, so nodes
//! with skewed clocks agree. When Redis is failing or late (see
//! [`crate::redis::FastRedis`]), this node's own bucket of the same rate and
//! burst decides instead: refusing every send because Redis is down would
//! turn a cache outage into a messaging outage, and allowing every send
//! would leave a flood unchecked. While Redis is out, a user spreading sends
//! over N nodes gets up to N times the budget.
//!
//! A node takes tokens in small leases: up to a tenth of a second of the
//! rate at once (at most [`MAX_LEASE`]), spent locally until gone or
//! [`LEASE_TTL`] old, so most requests skip the Redis round trip. Leased
//! tokens have left the shared bucket, so the nodes together never admit
//! more than it issues; a lease another node holds can only make this one
//! refuse early, and for at most [`LEASE_TTL`]. With a rate below 20/s
//! every request asks Redis, exactly as without leases.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use fred::types::scripts::Script;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::log_throttle::LogThrottle;
use crate::redis::FastRedis;

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
    /// This node's own buckets, per key, for while Redis cannot answer;
    /// forgotten once idle long enough to be full again.
    local: moka::future::Cache<String, Arc<DefaultDirectRateLimiter>>,
}

/// What the limiter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a token will be there after this many milliseconds.
    Limited {
        retry_after_ms: u64,
    },
    /// Redis did not answer in time; this node's own bucket allowed it.
    AllowedLocally,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        let (rate, burst) = (rate.max(1), burst.max(1));
        RateLimiter {
            rate,
            burst,
            lease: (rate / 10).clamp(1, MAX_LEASE).min(burst),
            leased: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LEASE_TTL).build(),
            local: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_millis(u64::from(burst) * 1000 / u64::from(rate) + 1000))
                .build(),
        }
    }

    /// Takes one token for `key`: from this node's lease, else from the
    /// bucket in Redis, else (Redis failing or late) from this node's own bucket.
    pub async fn check(&self, redis: &FastRedis, key: &str) -> Decision {
        if let Some(leased) = self.leased.get(key).await
            && leased.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
        {
            return Decision::Allowed;
        }
        let (owned_key, args) = (key.to_owned(), vec![self.rate, self.burst, self.lease]);
        let result: Result<(u32, i64), _> =
            redis.call(|client| async move { TOKEN_BUCKET.evalsha_with_reload(&client, owned_key, args).await }).await;
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
                static UNAVAILABLE: LogThrottle = LogThrottle::every_10s();
                if let Some(suppressed) = UNAVAILABLE.check() {
                    tracing::warn!(error = %e, suppressed, "rate limiter unavailable; this node's own buckets decide meanwhile");
                }
                self.check_locally(key).await
            }
        }
    }

    /// Takes one token from this node's own bucket for `key`.
    async fn check_locally(&self, key: &str) -> Decision {
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self
            .local
            .get_with(key.to_owned(), async move {
                let quota =
                    Quota::per_second(NonZeroU32::new(rate).expect("rate >= 1")).allow_burst(NonZeroU32::new(burst).expect("burst >= 1"));
                Arc::new(governor::RateLimiter::direct(quota))
            })
            .await;
        match bucket.check() {
            Ok(()) => Decision::AllowedLocally,
            Err(not_until) => {
                Decision::Limited { retry_after_ms: (not_until.wait_time_from(DefaultClock::default().now()).as_millis() as u64).max(1) }
            }
        }
    }
}
