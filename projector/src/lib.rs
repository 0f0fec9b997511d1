//! The projector: the CQRS read side's writer.
//!
//! - [`relay`] moves committed outbox rows onto the Redis stream `events`.
//! - [`consumer`] reads the stream in the `projector` consumer group and
//!   merges each event into per-user projections ([`apply`]; the keys: `duet_common::keys`).
//!   Other groups (the push triggers) can run alongside: [`Projector::add_group`].
//! - [`rebuild`] recomputes the projections from PostgreSQL; it runs by
//!   itself when they are cold (first start, or Redis lost its data).
//! - [`metrics`] exposes throughput and lag on `/metrics`.
//!
//! Every process running the projector runs all of it; relays take turns
//! on one position (`relay_position`, see `docs/decisions/0004-read-side.md`)
//! and consumers split the stream via the group.

pub mod apply;
pub mod consumer;
pub mod metrics;
pub mod rebuild;
pub mod relay;
pub mod upkeep;

use std::time::Duration;

use duet_common::supervise::supervise;
use duet_common::{AppContext, stream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use duet_common::stream::ConsumerConfig;
pub use metrics::{Lag, ProjectorMetrics};

/// How a projector process behaves.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    pub consumer: ConsumerConfig,
    /// Outbox rows published per relay transaction.
    pub relay_batch: i64,
    /// How often the relay polls when no notification comes.
    pub relay_poll: Duration,
    /// How often lag is measured and cold projections are looked for.
    pub check_every: Duration,
    /// How often the outbox's partitions are kept up ([`upkeep`]).
    pub outbox_upkeep_every: Duration,
    /// How long published outbox events are kept; None keeps them all.
    pub outbox_retention: Option<Duration>,
}

impl ProjectorConfig {
    /// Defaults for one process; `name` must be stable across restarts of
    /// that process to re-read its own pending entries at once.
    pub fn new(name: impl Into<String>) -> Self {
        ProjectorConfig {
            consumer: ConsumerConfig {
                name: name.into(),
                batch: 256,
                claim_idle: Duration::from_secs(30),
                spacing: Duration::from_millis(50),
            },
            relay_batch: 256,
            relay_poll: Duration::from_millis(500),
            check_every: Duration::from_secs(1),
            outbox_upkeep_every: Duration::from_secs(60),
            outbox_retention: None,
        }
    }
}

/// The running projector's tasks.
pub struct Projector {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    consumer: ConsumerConfig,
    pub metrics: ProjectorMetrics,
}

impl Projector {
    /// Starts the relay, the outbox upkeep, the consumer and the lag/health
    /// task; the first three run supervised (components "relay",
    /// "outbox-upkeep" and "projector").
    pub async fn start(ctx: &AppContext, config: ProjectorConfig) -> anyhow::Result<Self> {
        let metrics = ProjectorMetrics::register(ctx);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // Blocking reads get a connection of their own.
        let reader =
            duet_common::redis::connect(&ctx.settings.redis_url, ctx.settings.redis_ca_file.as_deref(), stream::reader_size(ctx)).await?;
        let relay = {
            let (ctx, metrics, stop) = (ctx.clone(), metrics.clone(), stop.clone());
            let (batch, poll) = (config.relay_batch, config.relay_poll);
            let health = ctx.components.register("relay", true);
            async move {
                supervise(health, stop.clone(), |health| relay::run(ctx.clone(), metrics.clone(), batch, poll, health, stop.clone())).await
            }
        };
        tasks.spawn(relay);
        let upkeep = {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            let (every, retention) = (config.outbox_upkeep_every, config.outbox_retention);
            let health = ctx.components.register("outbox-upkeep", false);
            async move { supervise(health, stop.clone(), |health| upkeep::run(ctx.clone(), every, retention, health, stop.clone())).await }
        };
        tasks.spawn(upkeep);
        let projections = consumer::Projections { ctx: ctx.clone(), pairs: apply::Pairs::new(ctx.db.clone()), metrics: metrics.clone() };
        tasks.spawn(stream::supervised(
            ctx.clone(),
            reader,
            consumer::GROUP,
            "projector",
            config.consumer.clone(),
            projections,
            stop.clone(),
        ));
        tasks.spawn(watch_health(ctx.clone(), metrics.clone(), config.check_every, stop.clone()));
        Ok(Projector { stop, tasks, consumer: config.consumer, metrics })
    }

    /// Runs another consumer group on the stream this projector feeds (the
    /// push triggers), under the same consumer name, supervised as
    /// `component`; it stops with the rest.
    pub async fn add_group(
        &mut self,
        ctx: &AppContext,
        group: &'static str,
        component: &'static str,
        handler: impl stream::EventHandler + 'static,
    ) -> anyhow::Result<()> {
        let reader =
            duet_common::redis::connect(&ctx.settings.redis_url, ctx.settings.redis_ca_file.as_deref(), stream::reader_size(ctx)).await?;
        self.tasks.spawn(stream::supervised(ctx.clone(), reader, group, component, self.consumer.clone(), handler, self.stop.clone()));
        Ok(())
    }

    /// Stops gracefully: in-flight batches finish (or stay pending for later).
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops at once, as a crash would: whatever was read and not yet
    /// acknowledged stays pending.
    pub fn kill(mut self) {
        self.tasks.abort_all();
    }
}

/// Rebuilds cold projections and refreshes the lag gauges.
async fn watch_health(ctx: AppContext, metrics: ProjectorMetrics, every: Duration, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match duet_common::read_model::is_ready(&ctx).await {
            Ok(false) => match rebuild::rebuild(&ctx).await {
                Ok(Some(_)) => {
                    metrics.rebuilds.inc();
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "projection rebuild failed"),
            },
            Ok(true) => {}
            Err(e) => tracing::debug!(error = format!("{e:#}"), "Redis unavailable for the projector"),
        }
        if let Err(e) = metrics.refresh(&ctx).await {
            tracing::debug!(error = format!("{e:#}"), "could not measure projector lag");
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}
