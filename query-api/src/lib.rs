//! The query side: reads served from projections and read replicas.
//!
//! Nothing here writes. Reads that must see a caller's own writes say so
//! (see `docs/decisions`), everything else may lag the primary slightly.

pub mod api;
pub mod users;

use duet_common::AppContext;

/// The query handlers' shared state.
#[derive(Clone)]
pub struct Queries {
    pub ctx: AppContext,
}

impl Queries {
    pub fn new(ctx: &AppContext) -> Self {
        Queries { ctx: ctx.clone() }
    }
}
