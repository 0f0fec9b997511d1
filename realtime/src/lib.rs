//! The realtime gateway: `GET /ws`, Duet's WebSocket protocol
//! (`docs/protocol.md`), presence, and live delivery across nodes.
//!
//! Each connection has a reader (this crate's `connection` and `handlers`)
//! and a writer (`writer`) joined by a bounded queue. Commands go through
//! [`duet_command_api::Commands`] in-process, the same path as REST. Live
//! events arrive from Redis Pub/Sub (`subscriber`) and reach local sessions
//! through the `hub`; PostgreSQL fills whatever Pub/Sub loses
//! (`docs/decisions/0001-live-delivery.md`).

mod changes;
mod connection;
pub mod errors;
mod handlers;
mod hub;
mod metrics;
mod order;
mod presence;
mod session;
mod store;
mod subscriber;
mod sync;
mod writer;

use duet_common::ids::{ConversationId, UserId};
use std::sync::Arc;
use std::time::Duration;

use duet_command_api::Commands;
use duet_common::AppContext;
use duet_common::ratelimit::RateLimiter;
use fred::clients::SubscriberClient;
use fred::interfaces::ClientLike;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::metrics::GatewayMetrics;

/// The gateway of one process. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: AppContext,
    commands: Commands,
    hub: Arc<Hub>,
    subscriber: SubscriberClient,
    metrics: GatewayMetrics,
    handshakes: RateLimiter,
    /// Cancelled once on shutdown; every connection closes with 1012.
    stopping: CancellationToken,
    /// Open connections, so shutdown can wait for them.
    connections: TaskTracker,
    /// (conversation, user) → peer, for typing: membership never changes.
    peers: moka::future::Cache<(ConversationId, UserId), UserId>,
    typing_ttl: Duration,
    /// Live dispatch, subscription changes, the presence sweeper.
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl Gateway {
    /// Connects the node's Redis subscriber and starts the background tasks
    /// (live dispatch, subscription changes, presence sweeper).
    pub async fn start(ctx: &AppContext, commands: Commands) -> anyhow::Result<Gateway> {
        let subscriber = subscriber::connect(&ctx.settings.redis_url, ctx.settings.redis_ca_file.as_deref()).await?;
        let (hub, subscriptions) = Hub::new(ctx.keys.clone(), subscriber.clone(), ctx.fast_redis.clone());
        ctx.live.attach(hub.clone());
        let stopping = CancellationToken::new();
        let per_min = ctx.settings.handshake_per_min.max(1);
        let inner = Arc::new(Inner {
            ctx: ctx.clone(),
            commands,
            hub: hub.clone(),
            subscriber: subscriber.clone(),
            metrics: GatewayMetrics::register(&ctx.metrics),
            handshakes: RateLimiter::new((per_min / 60).max(1), per_min),
            stopping: stopping.clone(),
            connections: TaskTracker::new(),
            peers: moka::future::Cache::new(100_000),
            typing_ttl: Duration::from_secs(ctx.settings.typing_ttl_secs.max(1)),
            tasks: std::sync::Mutex::new(JoinSet::new()),
        });
        {
            let mut tasks = inner.tasks.lock().expect("tasks poisoned");
            tasks.spawn(subscriptions);
            tasks.spawn(subscriber::run(subscriber, hub, ctx.live.origin().to_owned()));
            tasks.spawn(presence::supervised_sweep(ctx.clone(), stopping));
        }
        Ok(Gateway { inner })
    }

    /// The `GET /ws` endpoint.
    pub fn endpoint(&self) -> impl poem::Endpoint + 'static {
        connection::endpoint(self.clone())
    }

    /// Closes every connection with 1012 once its in-flight command is done,
    /// waits for them (at most `grace`), then stops the background tasks.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.cancel();
        inner.connections.close();
        if tokio::time::timeout(grace, inner.connections.wait()).await.is_err() {
            tracing::warn!(left = inner.connections.len(), "connections still open after the shutdown grace period");
        }
        inner.tasks.lock().expect("tasks poisoned").abort_all();
        let _ = inner.subscriber.quit().await;
    }
}
