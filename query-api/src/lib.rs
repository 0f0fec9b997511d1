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

use duet_common::AppContext;

/// The query handlers' shared state.
#[derive(Clone)]
pub struct Queries {
    pub ctx: AppContext,
    pub cache: cache::Caches,
    pub metrics: history::ReadMetrics,
}

impl Queries {
    pub fn new(ctx: &AppContext) -> Self {
        Queries { ctx: ctx.clone(), cache: cache::Caches::new(ctx.db.clone()), metrics: history::ReadMetrics::register(ctx) }
    }
}
