//! Token-bucket rate limits kept in Redis, so every node enforces the same budget.
//!
//! The bucket is updated by one Lua script using Redis' own clock, so nodes
//! with skewed clocks agree. When Redis is unreachable the limiter lets the
//! request through: refusing every send because Redis is down would turn a
//! cache outage into a messaging outage.

use std::sync::LazyLock;

use fred::prelude::*;
use fred::types::scripts::Script;

/// Tokens are kept in thousandths so the script works in integers.
static TOKEN_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local rate = tonumber(ARGV[1])   -- tokens per second
local burst = tonumber(ARGV[2]) * 1000
local cost = tonumber(ARGV[3]) * 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
else
  retry = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', math.floor(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return retry
"#,
    )
});

/// A per-key token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    rate: u32,
    burst: u32,
}

/// What the limiter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a token will be there after this many milliseconds.
    Limited { retry_after_ms: u64 },
    /// Redis did not answer; the request was let through.
    Unchecked,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter { rate: rate.max(1), burst: burst.max(1) }
    }

    /// Takes one token from the bucket at `key`.
    pub async fn check(&self, redis: &Pool, key: &str) -> Decision {
        let result: Result<i64, Error> = match crate::redis::connected(redis) {
            Some(client) => TOKEN_BUCKET.evalsha_with_reload(client, key, vec![self.rate, self.burst, 1]).await,
            None => Err(crate::redis::down()),
        };
        match result {
            Ok(0) => Decision::Allowed,
            Ok(ms) => Decision::Limited { retry_after_ms: ms.max(1) as u64 },
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing");
                Decision::Unchecked
            }
        }
    }
}
