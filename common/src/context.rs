//! What every service of one process shares: pools, keys and metrics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::auth::JwtKeys;
use crate::fanout::Fanout;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::replicas::Replicas;
use crate::sessions::SessionCheck;
use crate::settings::{Environment, Settings};
use crate::supervise::Components;
use crate::{db, redis};

#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    /// The primary: all writes, and reads that must see them.
    pub db: PgPool,
    /// History and search reads; none configured: they use the primary.
    pub replicas: Arc<Replicas>,
    pub redis: fred::prelude::Pool,
    /// The same Redis for what sends, handshakes and presence wait on: a short
    /// deadline and a circuit breaker, so a stuck Redis degrades them instead of stalling them.
    pub fast_redis: redis::FastRedis,
    pub keys: Keys,
    /// Live events: to this node's sessions, and through Redis to the others'.
    pub live: Fanout,
    pub jwt: Arc<JwtKeys>,
    /// Whether a token's sign-in still stands (shared by REST and the WebSocket).
    pub session_check: Arc<SessionCheck>,
    pub metrics: Arc<Metrics>,
    /// This process, in presence values and logs.
    pub node_id: String,
    /// Signalled when this process has committed outbox events, so its
    /// relay publishes them at once (the relay polls for other processes').
    pub outbox_written: Arc<tokio::sync::Notify>,
    /// The health of the supervised background components, for `/readyz`.
    pub components: Arc<Components>,
}

impl AppContext {
    /// Connects to PostgreSQL (creating the database and applying migrations) and Redis.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        if settings.jwt_secret.is_none() && settings.jwt_keys.is_none() {
            tracing::warn!(
                "DUET_JWT_SECRET is not set: using the built-in development secret. \
                 Anyone can forge tokens. Never run like this outside development."
            );
        }
        debug_assert!(settings.env == Environment::Development || settings.jwt_secret.is_some() || settings.jwt_keys.is_some());
        db::ensure_database(&settings.database_url).await?;
        db::migrate(&settings.database_url).await?;
        let db = db::connect(&settings.database_url, settings.db_pool_size).await?;
        let replicas = match &settings.database_replica_url {
            Some(urls) => Replicas::connect_lazy(urls, settings.db_pool_size)?,
            None => Replicas::default(),
        };
        let redis = redis::connect(&settings.redis_url, settings.redis_ca_file.as_deref(), 4).await.context("Failed to set up Redis")?;
        redis::warn_if_evicting(&redis).await;
        let jwt = Arc::new(JwtKeys::new(&settings)?);
        let keys = Keys::new(settings.redis_prefix.clone());
        let node_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let metrics = Arc::new(Metrics::new());
        let fast_redis = redis::FastRedis::new(redis.clone(), &settings, &metrics);
        let live = Fanout::new(fast_redis.clone(), keys.clone(), &node_id, &metrics);
        let session_check = Arc::new(SessionCheck::new(db.clone(), Duration::from_millis(settings.session_cache_ms)));
        let components = Components::new(&metrics);
        Ok(AppContext {
            settings: Arc::new(settings),
            db,
            replicas: Arc::new(replicas),
            redis,
            fast_redis,
            keys,
            live,
            jwt,
            session_check,
            metrics,
            node_id,
            outbox_written: Arc::new(tokio::sync::Notify::new()),
            components,
        })
    }
}
