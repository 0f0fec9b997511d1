//! The consumer: reads the event stream in the `projector` consumer group
//! (see [`duet_common::stream`]) and merges each event into the projections.
//!
//! Applying twice is harmless (see [`crate::apply`]), so the group's
//! re-deliveries after a crash or a failed batch are too.

use duet_common::AppContext;
use duet_common::events::Envelope;
use duet_common::stream::{Entry, EventHandler};

use crate::apply::{Pairs, apply_merges, merges};
use crate::metrics::ProjectorMetrics;

pub const GROUP: &str = "projector";

/// Applies entries to the projections.
pub struct Projections {
    pub ctx: AppContext,
    pub pairs: Pairs,
    pub metrics: ProjectorMetrics,
}

impl EventHandler for Projections {
    /// Applies a batch: its merges go to Redis together (they commute).
    async fn handle(&self, entries: &[Entry]) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(entries.len() * 2);
        for entry in entries {
            let Some(event) = &entry.event else {
                continue;
            };
            match serde_json::from_str::<Envelope>(event) {
                Ok(envelope) => batch.extend(merges(&self.pairs, envelope.event).await?),
                Err(e) => {
                    // A payload this version cannot read would block the group
                    // forever if left pending: log it, count it, move on.
                    tracing::error!(id = %entry.id, error = %e, "undecodable event skipped");
                    self.metrics.undecodable.inc();
                }
            }
        }
        apply_merges(&self.ctx, &batch).await?;
        self.metrics.applied.inc_by(entries.len() as u64);
        Ok(())
    }
}
