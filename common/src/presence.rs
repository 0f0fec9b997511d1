//! Presence in Redis, shared by the gateway (which writes it) and the jobs
//! (which read it to decide whether to push).
//!
//! Every key is in the user's presence shard (`{p<n>}`, see [`crate::keys`]),
//! so each script touches one Redis Cluster slot.
//!
//! - `presence:{p<n>}:user:{id}`: a string `nodeId:unixMs` with a TTL
//!   (`DUET_PRESENCE_TTL_SECS`), refreshed by every ping of any session.
//!   The user is online while it exists.
//! - `presence:{p<n>}:sessions:{id}`: a sorted set of the user's session ids, scored
//!   by when each expires (unix ms), with the same TTL. It lets a clean close
//!   of the last session mark the user offline at once, while a crashed
//!   session keeps the user online only until its own expiry.
//!
//! - `presence:{p<n>}:expiries`: a sorted set of the shard's user ids scored by when their
//!   presence ends (unix ms); a clean close of the last session scores it
//!   "now". [`claim_expired`] takes the users whose time has passed and whose
//!   user key is gone: each goes offline exactly once, whichever node asks,
//!   whether it closed cleanly or crashed.
//!
//! If Redis does not answer (within the short deadline of
//! [`FastRedis`], or at all while its circuit breaker is open), presence is
//! unknown: callers get `None`, never a guess, and never wait longer.

use crate::ids::{SessionId, UserId};
use std::collections::BTreeMap;
use std::sync::LazyLock;

use fred::prelude::*;
use fred::types::scripts::Script;

use crate::keys::{Keys, PRESENCE_SHARDS, presence_shard};
use crate::log_throttle::LogThrottle;
use crate::redis::FastRedis;

static WRITE_FAILED: LogThrottle = LogThrottle::every_10s();
static READ_FAILED: LogThrottle = LogThrottle::every_10s();

/// Refreshes a session: KEYS = [user, sessions, expiries]; ARGV = [session, node, ttl ms, user id].
/// Returns 1 if the user was offline before (so peers should be told).
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local was_online = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. now, 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[4])
if was_online == 1 then return 0 else return 1 end
"#,
    )
});

/// Ends a session: KEYS = [user, sessions, expiries]; ARGV = [session, user id].
/// Returns 1 if that was the user's last live session (now offline).
static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) == 0 then
  local existed = redis.call('DEL', KEYS[1])
  redis.call('DEL', KEYS[2])
  if existed == 1 then redis.call('ZADD', KEYS[3], now, ARGV[2]) end
  return existed
end
return 0
"#,
    )
});

/// Marks a session alive for `ttl_ms`. `Some(true)` if the user just came online.
pub async fn touch(redis: &FastRedis, keys: &Keys, user_id: UserId, session_id: SessionId, node_id: &str, ttl_ms: u64) -> Option<bool> {
    let keys = vec![keys.presence(user_id), keys.presence_sessions(user_id), keys.presence_expiries(presence_shard(user_id))];
    let args = vec![session_id.to_string(), node_id.to_owned(), ttl_ms.to_string(), user_id.to_string()];
    let result: Result<i64, _> = redis.call(|client| async move { TOUCH.evalsha_with_reload(&client, keys, args).await }).await;
    match result {
        Ok(came_online) => Some(came_online == 1),
        Err(e) => {
            if let Some(suppressed) = WRITE_FAILED.check() {
                tracing::warn!(error = %e, suppressed, "presence write failed");
            }
            None
        }
    }
}

/// Ends a session. `Some(true)` if the user is now offline.
pub async fn leave(redis: &FastRedis, keys: &Keys, user_id: UserId, session_id: SessionId) -> Option<bool> {
    let keys = vec![keys.presence(user_id), keys.presence_sessions(user_id), keys.presence_expiries(presence_shard(user_id))];
    let args = vec![session_id.to_string(), user_id.to_string()];
    let result: Result<i64, _> = redis.call(|client| async move { LEAVE.evalsha_with_reload(&client, keys, args).await }).await;
    match result {
        Ok(went_offline) => Some(went_offline == 1),
        Err(e) => {
            if let Some(suppressed) = WRITE_FAILED.check() {
                tracing::warn!(error = %e, suppressed, "presence write failed");
            }
            None
        }
    }
}

/// Whether each user is online; `None` when Redis cannot tell.
pub async fn online(redis: &FastRedis, keys: &Keys, users: &[UserId]) -> Option<Vec<bool>> {
    if users.is_empty() {
        return Some(Vec::new());
    }
    // One MGET (user keys are strings): a command per user would cost a
    // round trip and a syscall pair each.
    let keys: Vec<String> = users.iter().map(|user| keys.presence(*user)).collect();
    let read = |client: Client| async move {
        if !client.is_clustered() {
            return client.mget::<Vec<Option<String>>, _>(keys).await;
        }
        // One MGET per presence shard (one slot each), together; answers back in the asked order.
        let mut by_shard: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, user) in users.iter().enumerate() {
            by_shard.entry(presence_shard(*user)).or_default().push(i);
        }
        let reads =
            by_shard.values().map(|at| client.mget::<Vec<Option<String>>, _>(at.iter().map(|&i| keys[i].clone()).collect::<Vec<_>>()));
        let answers = futures_util::future::try_join_all(reads).await?;
        let mut found = vec![None; users.len()];
        for (at, answer) in by_shard.values().zip(answers) {
            for (&i, value) in at.iter().zip(answer) {
                found[i] = value;
            }
        }
        Ok(found)
    };
    match redis.call(read).await {
        Ok(found) if found.len() == users.len() => Some(found.into_iter().map(|v| v.is_some()).collect()),
        Ok(found) => {
            tracing::warn!(asked = users.len(), answered = found.len(), "presence read answered the wrong count");
            None
        }
        Err(e) => {
            if let Some(suppressed) = READ_FAILED.check() {
                tracing::warn!(error = %e, suppressed, "presence read failed");
            }
            None
        }
    }
}

/// Takes up to `limit` users whose presence has ended: KEYS = [expiries];
/// ARGV = [user key prefix, limit]. Returns a flat list `user, ended_ms, …`.
/// (User keys are derived in the script: they share the expiry set's slot.)
static CLAIM_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #due, 2 do
  local user = due[i]
  if redis.call('EXISTS', ARGV[1] .. user) == 0 then
    redis.call('ZREM', KEYS[1], user)
    table.insert(out, user)
    table.insert(out, due[i + 1])
  end
end
return out
"#,
    )
});

/// Users whose presence ended (by a clean close or by TTL), each returned
/// once across all callers, with when it ended. Empty when Redis is down.
pub async fn claim_expired(redis: &Pool, keys: &Keys, limit: usize) -> Vec<(UserId, chrono::DateTime<chrono::Utc>)> {
    let Some(client) = crate::redis::connected(redis) else { return Vec::new() };
    let mut ended = Vec::new();
    // Shard by shard, at most `limit` in all; a full answer makes the caller ask again.
    for shard in 0..PRESENCE_SHARDS {
        let left = limit - ended.len();
        if left == 0 {
            break;
        }
        let (expiries, user_prefix) = (keys.presence_expiries(shard), keys.presence_prefix(shard));
        let result: Result<Vec<String>, Error> =
            CLAIM_EXPIRED.evalsha_with_reload(client, vec![expiries], vec![user_prefix, left.to_string()]).await;
        match result {
            Ok(flat) => ended.extend(flat.chunks_exact(2).filter_map(|pair| {
                let user = pair[0].parse().ok()?;
                let ms = pair[1].parse::<f64>().ok()? as i64;
                Some((user, chrono::DateTime::from_timestamp_millis(ms)?))
            })),
            Err(e) => {
                static SWEEP_FAILED: LogThrottle = LogThrottle::every_10s();
                if let Some(suppressed) = SWEEP_FAILED.check() {
                    tracing::warn!(error = %e, suppressed, "presence sweep failed");
                }
                break;
            }
        }
    }
    ended
}
