//! Limits for slow, abuse-prone operations (login, registration), kept in
//! Redis so every node enforces the same budget.
//!
//! [`crate::ratelimit`]'s token bucket counts whole tokens per second; the
//! limits here are per minute or per hour, and login needs delays that grow
//! with each attempt. Two shapes, each one Lua script on Redis' clock:
//!
//! - [`Window`]: at most `limit` requests per `period` for a key (a fixed
//!   window: a burst of twice the limit across a boundary is possible, and
//!   fine for these purposes).
//! - [`Backoff`]: `free` attempts, then each further attempt must wait
//!   1 s, 2 s, 4 s … (at most `cap`) after the one before. Attempts are
//!   counted when they start, so parallel guesses cannot slip in together;
//!   a successful login [`Backoff::clear`]s the key. The count is forgotten
//!   after `cap` plus 15 minutes without attempts.
//!
//! When Redis does not answer, both let the request through (as the send
//! limit does): a cache outage must not stop every login.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use crate::log_throttle::LogThrottle;
use crate::ratelimit::Decision;
use crate::redis::{FastRedis, Unavailable};

/// Counts one request; returns {allowed, ms until the window ends}.
static WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
  return {0, ttl}
end
return {1, 0}
"#,
    )
});

/// One attempt; returns {allowed, ms until the next attempt is allowed}.
/// ARGV: free attempts, cap (ms), how long the count is kept (ms).
static BACKOFF: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'n', 'until')
local n = tonumber(state[1]) or 0
local not_before = tonumber(state[2]) or 0
if now < not_before then return {0, not_before - now} end
n = n + 1
local free = tonumber(ARGV[1])
if n > free then
  local wait = math.floor(math.min(tonumber(ARGV[2]), 1000 * 2 ^ math.min(n - free - 1, 30)))
  not_before = now + wait
end
redis.call('HSET', KEYS[1], 'n', n, 'until', not_before)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, 0}
"#,
    )
});

/// How long a [`Backoff`] count outlives its last attempt, beyond its cap.
pub const BACKOFF_MEMORY: Duration = Duration::from_secs(15 * 60);

/// At most `limit` requests per `period` for each key.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    limit: u32,
    period: Duration,
}

impl Window {
    pub fn new(limit: u32, period: Duration) -> Self {
        Window { limit: limit.max(1), period }
    }

    /// Counts one request for `key`.
    pub async fn check(&self, redis: &FastRedis, key: &str) -> Decision {
        let period_ms = self.period.as_millis().max(1) as u64;
        let (key, args) = (key.to_owned(), vec![u64::from(self.limit), period_ms]);
        decide(redis.call(|client| async move { WINDOW.evalsha_with_reload(&client, key, args).await }).await)
    }
}

/// Growing delays after `free` attempts for each key; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    free: u32,
    cap: Duration,
}

impl Backoff {
    pub fn new(free: u32, cap: Duration) -> Self {
        Backoff { free, cap: cap.max(Duration::from_secs(1)) }
    }

    /// Counts one attempt for `key`, or refuses it while the last one's delay runs.
    pub async fn attempt(&self, redis: &FastRedis, key: &str) -> Decision {
        let cap_ms = self.cap.as_millis() as u64;
        let keep_ms = (self.cap + BACKOFF_MEMORY).as_millis() as u64;
        let (key, args) = (key.to_owned(), vec![u64::from(self.free), cap_ms, keep_ms]);
        decide(redis.call(|client| async move { BACKOFF.evalsha_with_reload(&client, key, args).await }).await)
    }

    /// Forgets the attempts for `key` (after a success).
    pub async fn clear(&self, redis: &FastRedis, key: &str) {
        let key = key.to_owned();
        if let Err(e) = redis.call(|client| async move { client.del::<i64, _>(key).await }).await {
            static FAILED: LogThrottle = LogThrottle::every_10s();
            if let Some(suppressed) = FAILED.check() {
                tracing::warn!(error = %e, suppressed, "could not clear a login backoff");
            }
        }
    }
}

/// Redis late or down: the attempt is let through (a throttle keeps no
/// local record), as the send limits' local bucket lets sends through.
fn decide(result: Result<(u32, i64), Unavailable>) -> Decision {
    match result {
        Ok((1, _)) => Decision::Allowed,
        Ok((_, ms)) => Decision::Limited { retry_after_ms: ms.max(1) as u64 },
        Err(e) => {
            static UNAVAILABLE: LogThrottle = LogThrottle::every_10s();
            if let Some(suppressed) = UNAVAILABLE.check() {
                tracing::warn!(error = %e, suppressed, "throttle unavailable; allowing");
            }
            Decision::AllowedLocally
        }
    }
}
