//! Background jobs on apalis (PostgreSQL backend): push notifications to
//! offline users, and batched `users.last_seen_at` writes.
//!
//! - [`trigger::Triggers`] reads the event stream in the `push` consumer
//!   group and enqueues pushes and badge updates (it runs with the
//!   projector, which feeds that stream).
//! - [`run`] is the jobs service: the push worker, the lastSeen worker and
//!   the mover that turns pending lastSeen entries into jobs.
//!
//! See docs/push.md for behaviour and guarantees, and
//! docs/decisions/0003-job-queue.md for why apalis-postgres.

pub mod lastseen;
pub mod metrics;
pub mod push;
pub mod queue;
pub mod trigger;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use apalis::prelude::{WorkerBuilder, WorkerError};
use duet_common::AppContext;
use futures_util::FutureExt;

pub use metrics::JobMetrics;
pub use queue::setup;
pub use trigger::Triggers;

/// Runs the job workers of this process until `shutdown` resolves.
///
/// Worker names carry the node id: apalis tracks workers by name, and a
/// restarted process must not be mistaken for the one before it.
pub async fn run(ctx: AppContext, metrics: JobMetrics, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    anyhow::ensure!(settings.push_max_attempts >= 1, "DUET_PUSH_MAX_ATTEMPTS must be at least 1");
    let pusher = Arc::new(push::Pusher::new(&ctx, metrics.clone())?);
    let writer = Arc::new(lastseen::LastSeenWriter { ctx: ctx.clone(), metrics: metrics.clone() });
    let stop = shutdown.shared();
    let until = |stop: futures_util::future::Shared<_>| async move {
        stop.await;
        Ok::<(), WorkerError>(())
    };

    let push_worker = WorkerBuilder::new(format!("duet-push-{}", ctx.node_id))
        .backend(queue::storage::<push::PushJob>(&ctx.db, settings, queue::PUSH_QUEUE))
        .data(pusher)
        .build(push::handle);
    let lastseen_worker = WorkerBuilder::new(format!("duet-lastseen-{}", ctx.node_id))
        .backend(queue::storage::<lastseen::LastSeenBatch>(&ctx.db, settings, queue::LASTSEEN_QUEUE))
        .data(writer)
        .build(lastseen::handle);
    tracing::info!(node = %ctx.node_id, "job workers starting");
    let mover = lastseen::run_mover(ctx.clone(), metrics, stop.clone());
    let (push, lastseen, ()) = tokio::join!(push_worker.run_until(until(stop.clone())), lastseen_worker.run_until(until(stop)), mover);
    push.context("The push worker failed")?;
    lastseen.context("The lastSeen worker failed")?;
    Ok(())
}
