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
//! When Redis does not answer, this node decides alone with the same rule,
//! on a record of its own kept in memory (as the send limit falls back to a
//! local bucket): a cache outage neither stops every login nor opens the
//! door to unlimited guessing. Each node then grants the budget once, so
//! with N nodes an attacker spread over them gets at most N times it, for
//! as long as Redis is away.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;
use tokio::time::Instant;

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
#[derive(Clone, Debug)]
pub struct Window {
    limit: u32,
    period: Duration,
    /// This node's own windows, for while Redis cannot answer: when each
    /// began and how many requests it counted.
    local: moka::future::Cache<String, Arc<Mutex<(Instant, u32)>>>,
}

impl Window {
    pub fn new(limit: u32, period: Duration) -> Self {
        let local = moka::future::Cache::builder().max_capacity(LOCAL_KEYS).time_to_live(period).build();
        Window { limit: limit.max(1), period, local }
    }

    /// Counts one request for `key`.
    pub async fn check(&self, redis: &FastRedis, key: &str) -> Decision {
        let period_ms = self.period.as_millis().max(1) as u64;
        let (owned_key, args) = (key.to_owned(), vec![u64::from(self.limit), period_ms]);
        match redis.call(|client| async move { WINDOW.evalsha_with_reload(&client, owned_key, args).await }).await {
            Ok(answer) => decide(answer),
            Err(e) => {
                unavailable(&e);
                let window = self.local.get_with(key.to_owned(), async { Arc::new(Mutex::new((Instant::now(), 0))) }).await;
                let mut window = window.lock().expect("window poisoned");
                // (The cache forgets a window at its end; this covers the moment between.)
                if window.0.elapsed() >= self.period {
                    *window = (Instant::now(), 0);
                }
                window.1 += 1;
                if window.1 > self.limit {
                    let left = self.period.saturating_sub(window.0.elapsed());
                    Decision::Limited { retry_after_ms: (left.as_millis() as u64).max(1) }
                } else {
                    Decision::AllowedLocally
                }
            }
        }
    }
}

/// Growing delays after `free` attempts for each key; see the module docs.
#[derive(Clone, Debug)]
pub struct Backoff {
    free: u32,
    cap: Duration,
    /// This node's own counts, for while Redis cannot answer: attempts, and
    /// when the next one is allowed.
    local: moka::future::Cache<String, Arc<Mutex<(u32, Instant)>>>,
}

impl Backoff {
    pub fn new(free: u32, cap: Duration) -> Self {
        let cap = cap.max(Duration::from_secs(1));
        let local = moka::future::Cache::builder().max_capacity(LOCAL_KEYS).time_to_idle(cap + BACKOFF_MEMORY).build();
        Backoff { free, cap, local }
    }

    /// Counts one attempt for `key`, or refuses it while the last one's delay runs.
    pub async fn attempt(&self, redis: &FastRedis, key: &str) -> Decision {
        let cap_ms = self.cap.as_millis() as u64;
        let keep_ms = (self.cap + BACKOFF_MEMORY).as_millis() as u64;
        let (owned_key, args) = (key.to_owned(), vec![u64::from(self.free), cap_ms, keep_ms]);
        match redis.call(|client| async move { BACKOFF.evalsha_with_reload(&client, owned_key, args).await }).await {
            Ok(answer) => decide(answer),
            Err(e) => {
                unavailable(&e);
                let state = self.local.get_with(key.to_owned(), async { Arc::new(Mutex::new((0, Instant::now()))) }).await;
                let mut state = state.lock().expect("backoff poisoned");
                let now = Instant::now();
                if now < state.1 {
                    return Decision::Limited { retry_after_ms: ((state.1 - now).as_millis() as u64).max(1) };
                }
                state.0 += 1;
                if state.0 > self.free {
                    state.1 = now + backoff_delay(state.0 - self.free, self.cap);
                }
                Decision::AllowedLocally
            }
        }
    }

    /// Forgets the attempts for `key` (after a success), in Redis and here.
    pub async fn clear(&self, redis: &FastRedis, key: &str) {
        self.local.invalidate(key).await;
        let key = key.to_owned();
        if let Err(e) = redis.call(|client| async move { client.del::<i64, _>(key).await }).await {
            static FAILED: LogThrottle = LogThrottle::every_10s();
            if let Some(suppressed) = FAILED.check() {
                tracing::warn!(error = %e, suppressed, "could not clear a login backoff");
            }
        }
    }
}

/// The wait after the `beyond`-th attempt past the free ones: 1 s, 2 s,
/// 4 s … at most `cap` (the Lua script's rule).
fn backoff_delay(beyond: u32, cap: Duration) -> Duration {
    Duration::from_secs(1 << (beyond - 1).min(30)).min(cap)
}

/// Most keys each throttle remembers locally (the least recently used go first).
const LOCAL_KEYS: u64 = 100_000;

fn unavailable(e: &Unavailable) {
    static UNAVAILABLE: LogThrottle = LogThrottle::every_10s();
    if let Some(suppressed) = UNAVAILABLE.check() {
        tracing::warn!(error = %e, suppressed, "throttle unavailable; this node's own records decide meanwhile");
    }
}

/// Redis' answer: {allowed, ms until allowed}.
fn decide((allowed, ms): (u32, i64)) -> Decision {
    if allowed == 1 { Decision::Allowed } else { Decision::Limited { retry_after_ms: ms.max(1) as u64 } }
}
