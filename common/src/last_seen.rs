//! Pending `users.last_seen_at` writes, handed from the gateway to the jobs.
//!
//! `{prefix}lastseen:{p<n>}:pending` is a sorted set of the ids of the users
//! of presence shard `n` ([`crate::keys`]) scored by when they went offline
//! (unix ms). `ZADD GT` coalesces a burst of disconnects
//! of one user into one entry with the latest time; the jobs service takes
//! entries in batches and writes them to PostgreSQL.

use crate::ids::UserId;
use chrono::{DateTime, Utc};
use fred::prelude::*;
use fred::types::sorted_sets::Ordering;

use crate::keys::Keys;
use crate::log_throttle::LogThrottle;

static FAILED: LogThrottle = LogThrottle::every_10s();

/// Records that `user_id` was last seen at `at`; a later time wins.
pub async fn record(redis: &Pool, keys: &Keys, user_id: UserId, at: DateTime<Utc>) {
    let Some(client) = crate::redis::connected(redis) else {
        if let Some(suppressed) = FAILED.check() {
            tracing::warn!(%user_id, suppressed, "Redis down: last seen not recorded");
        }
        return;
    };
    let result: Result<i64, Error> = client
        .zadd(
            keys.last_seen_pending(crate::keys::presence_shard(user_id)),
            None,
            Some(Ordering::GreaterThan),
            false,
            false,
            (at.timestamp_millis() as f64, user_id.to_string()),
        )
        .await;
    if let Err(e) = result
        && let Some(suppressed) = FAILED.check()
    {
        tracing::warn!(error = %e, %user_id, suppressed, "could not record last seen");
    }
}
