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
use apalis::prelude::{Event, EventListenerExt, WorkerBuilder, WorkerError};
use duet_common::AppContext;
use duet_common::supervise::{Health, supervise};
use tokio_util::sync::CancellationToken;

pub use metrics::JobMetrics;
pub use queue::setup;
pub use trigger::Triggers;

/// Runs the job workers of this process until `shutdown` resolves, each
/// supervised (components "push-worker", "lastseen-worker" and
/// "lastseen-mover", see `duet_common::supervise`): a worker whose backend
/// failed (PostgreSQL restarted, crashed or stalled) is built afresh and
/// started again with backoff.
pub async fn run(ctx: AppContext, metrics: JobMetrics, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    anyhow::ensure!(settings.push_max_attempts >= 1, "DUET_PUSH_MAX_ATTEMPTS must be at least 1");
    let pusher = Arc::new(push::Pusher::new(&ctx, metrics.clone())?);
    let writer = Arc::new(lastseen::LastSeenWriter { ctx: ctx.clone(), metrics: metrics.clone() });
    let stop = CancellationToken::new();
    tracing::info!(node = %ctx.node_id, "job workers starting");

    let push_worker = {
        let (ctx, pusher, stop) = (ctx.clone(), pusher.clone(), stop.clone());
        let mut generation = 0u64;
        supervise(ctx.components.register("push-worker", false), stop.clone(), move |health| {
            generation += 1;
            let worker = WorkerBuilder::new(worker_name("push", &ctx, generation))
                .backend(queue::storage::<push::PushJob>(&ctx.db, &ctx.settings, queue::PUSH_QUEUE))
                .data(pusher.clone())
                .on_event(progress(health))
                .build(push::handle);
            let stop = stop.clone();
            async move { worker.run_until(until(stop)).await.context("The push worker failed") }
        })
    };
    let lastseen_worker = {
        let (ctx, writer, stop) = (ctx.clone(), writer.clone(), stop.clone());
        let mut generation = 0u64;
        supervise(ctx.components.register("lastseen-worker", false), stop.clone(), move |health| {
            generation += 1;
            let worker = WorkerBuilder::new(worker_name("lastseen", &ctx, generation))
                .backend(queue::storage::<lastseen::LastSeenBatch>(&ctx.db, &ctx.settings, queue::LASTSEEN_QUEUE))
                .data(writer.clone())
                .on_event(progress(health))
                .build(lastseen::handle);
            let stop = stop.clone();
            async move { worker.run_until(until(stop)).await.context("The lastSeen worker failed") }
        })
    };
    let mover = supervise(ctx.components.register("lastseen-mover", true), stop.clone(), |health| {
        lastseen::run_mover(ctx.clone(), metrics.clone(), health, stop.clone())
    });
    let stopper = async {
        shutdown.await;
        stop.cancel();
    };
    tokio::join!(push_worker, lastseen_worker, mover, stopper);
    Ok(())
}

/// A worker's name: apalis registers workers by name (holding a lock per
/// name on a pooled connection), so each process, and each restart of a
/// worker within it, has a name of its own. A dead worker's jobs are re-run
/// by apalis's orphan recovery once its heartbeats stop.
fn worker_name(queue: &str, ctx: &AppContext, generation: u64) -> String {
    format!("duet-{queue}-{}-{generation}", ctx.node_id)
}

/// Resolves once `stop` is cancelled, as apalis's shutdown signal.
async fn until(stop: CancellationToken) -> Result<(), WorkerError> {
    stop.cancelled().await;
    Ok(())
}

/// A worker is healthy once its backend answers: a heartbeat (the first one
/// registers the worker) or a finished job.
fn progress(health: Health) -> impl Fn(&apalis::prelude::WorkerContext, &Event) + Send + Sync + 'static {
    move |_, event| {
        if matches!(event, Event::HeartBeat | Event::Success(_)) {
            health.ok();
        }
    }
}
