//! Redis connections (fred); the keys are in [`crate::keys`].
//!
//! Redis holds only what can be rebuilt or lost: presence, fan-out, rate
//! limits and projections. Clients fail fast while Redis is down, so callers
//! can degrade (presence `unknown`, sends still stored) instead of hanging.
//!
//! A Redis that is down closes its sockets; one that is paused, swapping or
//! cut off by the network keeps them open and answers nothing. Everything a
//! send, a WebSocket handshake or a presence read waits for therefore goes
//! through [`FastRedis`]: a short deadline per call, and a circuit breaker
//! ([`crate::breaker`]) that, once Redis has failed or been late a few times
//! in a row, refuses calls at once until a single probe finds it healthy.
//!
//! The URL alone says what Redis is (fred's forms): `redis://` one server,
//! `redis-cluster://h:p?node=h2:p2` a Cluster, `redis-sentinel://h:p?
//! sentinelServiceName=NAME&node=h2:p2` a master behind Sentinel (fred asks
//! the sentinels for the master again at every reconnect, so a failover is
//! followed); an `s` after `redis` (`rediss://`, `rediss-cluster://`,
//! `rediss-sentinel://`) adds TLS, trusting `DUET_REDIS_CA_FILE` or else
//! the system's roots.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fred::prelude::*;
use futures_util::TryStreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::breaker::{Breaker, Health, Transition};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// Builds and starts connecting a client pool; returns at once even if Redis
/// is down. `ca_file`: see [`config`].
pub async fn connect(url: &str, ca_file: Option<&Path>, size: usize) -> anyhow::Result<Pool> {
    let pool = builder(config(url, ca_file)?).build_pool(size).context("Failed to build the Redis pool")?;
    let _ = pool.connect_pool();
    // Give a healthy Redis a moment so the first requests find it connected.
    let _ = tokio::time::timeout(Duration::from_secs(2), pool.wait_for_connect()).await;
    Ok(pool)
}

/// A pooled client if Redis is connected right now. While Redis is down,
/// callers skip it at once (and degrade) instead of waiting for timeouts.
pub fn connected(pool: &Pool) -> Option<&Client> {
    let client = pool.next();
    client.is_connected().then_some(client)
}

/// Why a [`FastRedis`] call has no answer; the caller degrades.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("Redis is failing (circuit breaker open)")]
    Open,
    #[error("Redis is not connected")]
    Disconnected,
    #[error("Redis did not answer within {0:?}")]
    Late(Duration),
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Redis for callers that must not wait on it (see the module docs). Cheap
/// to clone: clones share one breaker.
#[derive(Clone)]
pub struct FastRedis {
    pool: Pool,
    deadline: Duration,
    breaker: Arc<Breaker>,
    /// 1 while the breaker is open or probing: Redis is skipped.
    open: Gauge,
    /// Times the breaker opened.
    trips: Counter,
}

impl FastRedis {
    /// Shares `pool`; the deadline and breaker come from `settings`, the
    /// metrics (`duet_redis_breaker_open`, `duet_redis_breaker_trips_total`) go to `metrics`.
    pub fn new(pool: Pool, settings: &Settings, metrics: &Metrics) -> Self {
        let (open, trips) = (Gauge::default(), Counter::default());
        metrics.register("redis_breaker_open", "1 while Redis calls are skipped after failures (circuit breaker open)", open.clone());
        metrics.register("redis_breaker_trips", "Times the Redis circuit breaker opened", trips.clone());
        FastRedis {
            pool,
            deadline: Duration::from_millis(settings.redis_fast_timeout_ms.max(1)),
            breaker: Arc::new(Breaker::new(settings.redis_breaker_failures, Duration::from_millis(settings.redis_breaker_cooldown_ms))),
            open,
            trips,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How long one call may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether calls go to Redis (the breaker is closed).
    pub fn healthy(&self) -> bool {
        self.breaker.health() == Health::Closed
    }

    /// Whether Redis answers a PING within the deadline; false at once while
    /// the breaker is open. For `/readyz`, which must not hang on a stuck Redis.
    pub async fn ping(&self) -> bool {
        self.call(|client| async move { client.ping::<String>(None).await }).await.is_ok()
    }

    /// Runs `call` on a pooled client, within the deadline and through the breaker.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.call_on(self.pool.next(), call).await
    }

    /// [`FastRedis::call`] on a chosen client of the pool.
    pub async fn call_on<T, F, Fut>(&self, client: &Client, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let Some(permit) = self.breaker.permit() else { return Err(Unavailable::Open) };
        if !client.is_connected() {
            self.note(permit.failed());
            return Err(Unavailable::Disconnected);
        }
        match tokio::time::timeout(self.deadline, call(client.clone())).await {
            Ok(Ok(answer)) => {
                self.note(permit.succeeded());
                Ok(answer)
            }
            Ok(Err(e)) if is_outage(&e) => {
                self.note(permit.failed());
                Err(e.into())
            }
            Ok(Err(e)) => {
                // Redis answered (a script or type error): it is there.
                self.note(permit.succeeded());
                Err(e.into())
            }
            Err(_) => {
                self.note(permit.failed());
                Err(Unavailable::Late(self.deadline))
            }
        }
    }

    fn note(&self, transition: Transition) {
        static OPENED: LogThrottle = LogThrottle::every_10s();
        match transition {
            Transition::None => {}
            Transition::Opened => {
                self.trips.inc();
                self.open.set(1);
                if let Some(suppressed) = OPENED.check() {
                    tracing::warn!(
                        suppressed,
                        "Redis is failing or late: skipping it (sends stay on PostgreSQL, presence unknown) until a probe finds it back"
                    );
                }
            }
            Transition::Closed => {
                self.open.set(0);
                tracing::info!("Redis answers again: circuit breaker closed");
            }
        }
    }
}

/// Errors that say Redis is not reachable (as opposed to Redis refusing a command).
fn is_outage(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure)
}

/// The client configuration `url` names (see the module docs), failing fast
/// while Redis is down. A TLS URL trusts the CAs in the PEM file `ca_file`
/// if given (else the system's roots); other URLs ignore it.
pub fn config(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Config> {
    let mut config = Config::from_url(url).context("Failed to parse REDIS_URL")?;
    config.fail_fast = true;
    if let (Some(tls), Some(path)) = (config.tls.as_mut(), ca_file) {
        tls.connector = trusting(path)?;
    }
    Ok(config)
}

/// A rustls connector (ring, like sqlx) that trusts only the CAs in `path`.
fn trusting(path: &Path) -> anyhow::Result<fred::types::config::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("Failed to read DUET_REDIS_CA_FILE {shown}"))? {
        let cert = cert.with_context(|| format!("DUET_REDIS_CA_FILE {shown} holds a malformed certificate"))?;
        roots.add(cert).with_context(|| format!("DUET_REDIS_CA_FILE {shown} holds an unusable CA certificate"))?;
    }
    anyhow::ensure!(!roots.is_empty(), "DUET_REDIS_CA_FILE {shown} holds no certificate");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("rustls has no TLS version in common with ring")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls.into())
}

fn builder(config: Config) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| {
            perf.default_command_timeout = Duration::from_secs(2);
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_secs(2);
            conn.internal_command_timeout = Duration::from_secs(2);
            conn.max_command_attempts = 1;
            // Frames of several KiB must not wait for Nagle and delayed ACKs.
            conn.tcp.nodelay = Some(true);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    builder
}

/// Every key matching `pattern`: on each master of a cluster (a SCAN reads one server).
pub async fn scan_all(client: &Client, pattern: String) -> Result<Vec<Key>, Error> {
    if client.is_clustered() {
        client.scan_cluster_buffered(pattern, Some(1000), None).try_collect().await
    } else {
        client.scan_buffered(pattern, Some(1000), None).try_collect().await
    }
}

/// Deletes `keys`, in calls of up to 500 keys of one slot each in a cluster.
pub async fn delete_all(client: &Client, keys: Vec<Key>) -> Result<(), Error> {
    let groups: Vec<Vec<Key>> =
        if client.is_clustered() { fred::util::group_by_hash_slot(keys)?.into_values().map(Vec::from).collect() } else { vec![keys] };
    for group in groups {
        for chunk in group.chunks(500) {
            let _: i64 = client.del(chunk.to_vec()).await?;
        }
    }
    Ok(())
}

/// Whether Redis, set to `maxmemory` bytes under `policy`, may evict single
/// keys. Duet can lose all of Redis (it notices and rebuilds the projections
/// from PostgreSQL), but not some keys: an evicted unread set, stream or
/// presence key leaves the rest wrong, and nothing would notice.
pub fn eviction_risk(maxmemory: u64, policy: &str) -> bool {
    maxmemory > 0 && policy != "noeviction"
}

/// Warns at start-up when Redis may evict keys (see [`eviction_risk`]).
/// Quiet when Redis is down or refuses `CONFIG` (some managed services do).
pub async fn warn_if_evicting(pool: &Pool) {
    let Some(client) = connected(pool) else { return };
    let command = fred::types::CustomCommand::new_static("CONFIG", None, false);
    let reply: Result<Vec<String>, Error> = client.custom(command, vec!["GET", "maxmemory*"]).await;
    let Ok(reply) = reply else { return };
    let setting = |name: &str| reply.chunks(2).find(|pair| pair[0] == name).and_then(|pair| pair.get(1)).cloned();
    let maxmemory = setting("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
    let policy = setting("maxmemory-policy").unwrap_or_default();
    if eviction_risk(maxmemory, &policy) {
        tracing::warn!(
            maxmemory,
            policy,
            "Redis may evict keys under memory pressure: set maxmemory-policy noeviction (or maxmemory 0), \
             or keys Duet relies on (projections, the event stream, presence) can silently vanish"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::eviction_risk;

    #[test]
    fn only_a_memory_limit_with_an_evicting_policy_is_a_risk() {
        assert!(!eviction_risk(0, "allkeys-lru"), "no limit, nothing is evicted");
        assert!(!eviction_risk(1 << 30, "noeviction"), "writes fail instead");
        assert!(eviction_risk(1 << 30, "allkeys-lru"));
        assert!(eviction_risk(1 << 30, "volatile-ttl"), "presence keys and rate limits have a TTL");
    }
}
