//! The query side: reads served from projections and read replicas.
//!
//! Nothing here writes. Conversation lists come from the Redis projections
//! (PostgreSQL when they are cold or Redis is down); history and search come
//! from the replica, with read-your-writes for clients that say what they
//! have seen (see `docs/decisions/0004-read-side.md`).

pub mod api;
pub mod cache;
pub mod conversations;
pub mod history;
pub mod search;
pub mod users;

use duet_common::ids::UserId;
use duet_common::ratelimit::{Decision, RateLimiter};
use duet_common::{ApiError, AppContext};

/// The query handlers' shared state.
#[derive(Clone)]
pub struct Queries {
    pub ctx: AppContext,
    pub cache: cache::Caches,
    pub metrics: history::ReadMetrics,
    /// Per-user limit on `/users/lookup`: finding accounts by email must not become a scraper.
    lookup_limiter: RateLimiter,
    /// Per-user limit on `/search`, the most expensive read.
    search_limiter: RateLimiter,
}

impl Queries {
    pub fn new(ctx: &AppContext) -> Self {
        let per_minute = |n: u32| RateLimiter::new((n / 60).max(1), n);
        Queries {
            ctx: ctx.clone(),
            cache: cache::Caches::new(ctx.db.clone()),
            metrics: history::ReadMetrics::register(ctx),
            lookup_limiter: per_minute(ctx.settings.lookup_per_min),
            search_limiter: per_minute(ctx.settings.search_per_min),
        }
    }

    /// Counts a `/users/lookup` by `user` across nodes, or refuses it (429).
    pub async fn limit_lookup(&self, user: UserId) -> Result<(), ApiError> {
        limited(self.lookup_limiter.check(&self.ctx.fast_redis, &self.ctx.keys.lookup_rate(user)).await)
    }

    /// Counts a `/search` by `user` across nodes, or refuses it (429).
    pub async fn limit_search(&self, user: UserId) -> Result<(), ApiError> {
        limited(self.search_limiter.check(&self.ctx.fast_redis, &self.ctx.keys.search_rate(user)).await)
    }
}

fn limited(decision: Decision) -> Result<(), ApiError> {
    match decision {
        Decision::Limited { retry_after_ms } => Err(ApiError::RateLimited { retry_after_ms }),
        Decision::Allowed | Decision::AllowedLocally => Ok(()),
    }
}
