//! Process settings, read from environment variables (or the matching
//! command-line flags) with defaults that work on a developer machine.
//!
//! Every setting is documented in the README; `duet serve --help` lists them.

use std::net::SocketAddr;

mod attachments;

pub use attachments::{AttachmentSettings, Secret};

/// Where the process runs; production refuses unsafe defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How messages are appended: grouped into shared transactions (the
/// default), or one transaction per message (kept only so benchmarks can
/// compare the two side by side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AppendMode {
    Batched,
    Single,
}

/// The JWT secret used when none is configured outside production.
pub const DEV_JWT_SECRET: &str = "duet-development-secret-do-not-use-in-production";

#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// `development` allows a built-in JWT secret (with a warning); `production` refuses it.
    #[arg(long, env = "DUET_ENV", value_enum, default_value = "development")]
    pub env: Environment,

    /// Primary PostgreSQL; the database is created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/duet", hide_env_values = true)]
    pub database_url: String,

    /// Streaming replicas for history and search reads, comma-separated (taken in turn); reads use the primary when unset.
    #[arg(long, env = "DATABASE_REPLICA_URL", hide_env_values = true)]
    pub database_replica_url: Option<String>,

    /// Connections in the primary pool.
    #[arg(long, env = "DUET_DB_POOL_SIZE", default_value_t = 20)]
    pub db_pool_size: u32,

    /// Redis for presence, fan-out, rate limits and projections.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
    pub redis_url: String,

    /// PEM file of the CA(s) that sign the Redis servers' certificates, for
    /// `rediss://` URLs (and the TLS forms of cluster and sentinel URLs);
    /// unset: the system's trusted roots.
    #[arg(long, env = "DUET_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Shards of the event stream (`events:{0}` ... ); one conversation's
    /// events always go to the same one, in order. Every process of a
    /// deployment must use the same number: a relay with more shards writes
    /// streams that consumers with fewer never read.
    #[arg(long, env = "DUET_STREAM_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub stream_shards: u16,

    /// Prefix of every Redis key and channel, so several deployments (or tests) can share one Redis.
    #[arg(long, env = "DUET_REDIS_PREFIX", default_value = "duet:")]
    pub redis_prefix: String,

    /// Deadline (ms) of each Redis call a send, a WebSocket handshake or a
    /// presence read waits for; past it the caller degrades (local rate
    /// limit, live publish dropped, presence `unknown`) instead of waiting.
    #[arg(long, env = "DUET_REDIS_FAST_TIMEOUT_MS", default_value_t = 150)]
    pub redis_fast_timeout_ms: u64,

    /// Consecutive failed or late Redis calls that open the circuit breaker
    /// (callers then skip Redis at once).
    #[arg(long, env = "DUET_REDIS_BREAKER_FAILURES", default_value_t = 3)]
    pub redis_breaker_failures: u32,

    /// How long (ms) the breaker stays open before one probe call checks whether Redis is back.
    #[arg(long, env = "DUET_REDIS_BREAKER_COOLDOWN_MS", default_value_t = 1000)]
    pub redis_breaker_cooldown_ms: u64,

    /// HTTP and WebSocket listen address; port 0 picks a free port (the chosen address is logged).
    #[arg(long, env = "DUET_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Admin listen address for `/metrics`, `/docs`, the API documents and the health checks; keep it
    /// off the internet (loopback by default). Port 0 picks a free port (the chosen address is logged).
    #[arg(long, env = "DUET_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,

    /// PEM certificate chain: the public listener then serves HTTPS and WSS
    /// itself (deployments without a TLS-terminating balancer). Needs `DUET_TLS_KEY`.
    #[arg(long, env = "DUET_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of `DUET_TLS_CERT`.
    #[arg(long, env = "DUET_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// HS256 secret for access tokens, the key `default`. Required in production unless `DUET_JWT_KEYS` is set.
    #[arg(long, env = "DUET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Several HS256 keys, `kid:secret,kid:secret`: tokens are signed with the last and
    /// verified with any (rotation without downtime). Replaces `DUET_JWT_SECRET`.
    #[arg(long, env = "DUET_JWT_KEYS", hide_env_values = true)]
    pub jwt_keys: Option<String>,

    /// `iss` claim set on and required of every token.
    #[arg(long, env = "DUET_JWT_ISSUER", default_value = "duet")]
    pub jwt_issuer: String,

    /// `aud` claim set on and required of every token.
    #[arg(long, env = "DUET_JWT_AUDIENCE", default_value = "duet-clients")]
    pub jwt_audience: String,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "DUET_JWT_TTL_SECS", default_value_t = 900)]
    pub jwt_ttl_secs: u64,

    /// Lifetime of a refresh token, in seconds; each refresh starts a new one.
    #[arg(long, env = "DUET_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 86_400)]
    pub refresh_token_ttl_secs: u64,

    /// How long a node trusts what it learned of a session (active or revoked), in ms:
    /// the longest a revoked access token still works on REST.
    #[arg(long, env = "DUET_SESSION_CACHE_MS", default_value_t = 5_000)]
    pub session_cache_ms: u64,

    /// How often an open WebSocket re-reads its session from PostgreSQL, in seconds,
    /// in case a revocation published on Redis was lost.
    #[arg(long, env = "DUET_SESSION_RECHECK_SECS", default_value_t = 60)]
    pub session_recheck_secs: u64,

    /// `pretty` for people, `json` for log pipelines.
    #[arg(long, env = "DUET_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Message append path: `batched` (group commit) or `single` (for comparison only).
    #[arg(long, env = "DUET_APPEND_MODE", value_enum, default_value = "batched")]
    pub append_mode: AppendMode,

    /// Largest number of messages appended in one transaction.
    #[arg(long, env = "DUET_APPEND_MAX_BATCH", default_value_t = 512)]
    pub append_max_batch: usize,

    /// Append writers (and as many receipt writers, each keeping a connection of the
    /// primary pool); a conversation always goes to the same one, so its order is kept.
    /// Fewer writers make bigger batches and fewer commits: about one per core PostgreSQL
    /// can spend on writes (one on a 2-core machine that also runs Duet and Redis).
    #[arg(long, env = "DUET_APPEND_WRITERS", default_value_t = 1)]
    pub append_writers: usize,

    /// Least time in milliseconds between the starts of two batches of one receipt writer.
    /// Receipts have no answer on the WebSocket, so under load they wait to share a
    /// transaction (fewer commits for PostgreSQL); a receipt arriving at an idle writer
    /// is written at once. 0 writes each batch as soon as the last one committed.
    #[arg(long, env = "DUET_RECEIPT_SPACING_MS", default_value_t = 20)]
    pub receipt_spacing_ms: u64,

    /// CPU priority (nice, 0 to 19) of the read side's threads: the outbox relay, the
    /// projector, the push triggers and the job workers. They may trail the write path
    /// (live delivery never waits for them), so on busy cores a send, its commit and its
    /// delivery go first. 0 runs them on the process's own threads at its priority.
    #[arg(long, env = "DUET_READ_SIDE_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub read_side_nice: i32,

    /// Messages a user may send per second, over WebSocket and REST together, across all nodes.
    #[arg(long, env = "DUET_RATE_LIMIT_PER_SEC", default_value_t = 20)]
    pub rate_limit_per_sec: u32,

    /// Burst allowance of the per-user send limit.
    #[arg(long, env = "DUET_RATE_LIMIT_BURST", default_value_t = 40)]
    pub rate_limit_burst: u32,

    /// Seconds after sending during which the sender may edit or unsend a message (48 h by default).
    #[arg(long, env = "DUET_EDIT_WINDOW_SECS", default_value_t = 172_800)]
    pub edit_window_secs: u64,

    /// Reports (`POST /reports`) a user may file per second, across all nodes.
    #[arg(long, env = "DUET_REPORT_RATE_PER_SEC", default_value_t = 1)]
    pub report_rate_per_sec: u32,

    /// Burst allowance of the per-user report limit.
    #[arg(long, env = "DUET_REPORT_BURST", default_value_t = 5)]
    pub report_burst: u32,

    /// Seconds a presence key lives without a ping.
    #[arg(long, env = "DUET_PRESENCE_TTL_SECS", default_value_t = 60)]
    pub presence_ttl_secs: u64,

    /// Seconds a WebSocket client has to authenticate.
    #[arg(long, env = "DUET_AUTH_TIMEOUT_SECS", default_value_t = 10)]
    pub auth_timeout_secs: u64,

    /// Largest WebSocket frame accepted, in bytes; larger frames close the connection with 1009.
    #[arg(long, env = "DUET_WS_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_frame_bytes: usize,

    /// Frames queued for a slow client before it is disconnected with 1013.
    #[arg(long, env = "DUET_WS_OUTBOUND_QUEUE", default_value_t = 256)]
    pub ws_outbound_queue: usize,

    /// WebSocket handshakes allowed per client IP per minute.
    #[arg(long, env = "DUET_HANDSHAKE_PER_MIN", default_value_t = 120)]
    pub handshake_per_min: u32,

    /// Seconds a peer's `chat.typing start` lasts without a refresh.
    #[arg(long, env = "DUET_TYPING_TTL_SECS", default_value_t = 6)]
    pub typing_ttl_secs: u64,

    /// Comma-separated browser origins allowed to open WebSockets and to call the REST API (CORS); clients without `Origin` are always allowed.
    #[arg(long, env = "DUET_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    // ---- jobs: push notifications and lastSeen (docs/push.md) ----
    /// Path to a Google service-account JSON key; FCM is off when unset.
    #[arg(long, env = "DUET_FCM_CREDENTIALS")]
    pub fcm_credentials: Option<std::path::PathBuf>,

    /// Firebase project id; defaults to the key's `project_id`.
    #[arg(long, env = "DUET_FCM_PROJECT_ID")]
    pub fcm_project_id: Option<String>,

    /// FCM HTTP v1 base URL (tests point it at a local server).
    #[arg(long, env = "DUET_FCM_BASE_URL", default_value = "https://fcm.googleapis.com")]
    pub fcm_base_url: String,

    /// Path to the APNs token-auth key (.p8); APNs is off when unset.
    #[arg(long, env = "DUET_APNS_KEY")]
    pub apns_key: Option<std::path::PathBuf>,

    /// Key id of the .p8 key (the JWT `kid`).
    #[arg(long, env = "DUET_APNS_KEY_ID")]
    pub apns_key_id: Option<String>,

    /// Apple developer team id (the JWT `iss`).
    #[arg(long, env = "DUET_APNS_TEAM_ID")]
    pub apns_team_id: Option<String>,

    /// The app's bundle id, sent as `apns-topic`.
    #[arg(long, env = "DUET_APNS_TOPIC")]
    pub apns_topic: Option<String>,

    /// APNs base URL (`https://api.sandbox.push.apple.com` for development builds; tests use a local h2c server).
    #[arg(long, env = "DUET_APNS_BASE_URL", default_value = "https://api.push.apple.com")]
    pub apns_base_url: String,

    /// Put the message text in the notification (for an attachment, what it is: "Photo", "Voice message" …, and its caption); off by default (privacy).
    #[arg(long, env = "DUET_PUSH_PREVIEW", default_value_t = false, action = clap::ArgAction::Set)]
    pub push_preview: bool,

    /// Notification title.
    #[arg(long, env = "DUET_PUSH_TITLE", default_value = "Duet")]
    pub push_title: String,

    /// Notification body when previews are off.
    #[arg(long, env = "DUET_PUSH_BODY", default_value = "New message")]
    pub push_body: String,

    /// Attempts of one push job before it is recorded dead.
    #[arg(long, env = "DUET_PUSH_MAX_ATTEMPTS", default_value_t = 5)]
    pub push_max_attempts: u32,

    /// First retry delay in seconds; doubled per attempt (with jitter), at most 10 minutes.
    #[arg(long, env = "DUET_PUSH_RETRY_BASE_SECS", default_value_t = 2)]
    pub push_retry_base_secs: u64,

    /// Timeout of one request to FCM or APNs, in seconds.
    #[arg(long, env = "DUET_PUSH_TIMEOUT_SECS", default_value_t = 10)]
    pub push_timeout_secs: u64,

    /// Seconds between job-worker heartbeats; a worker silent for 3 of them is presumed dead and its jobs re-run.
    #[arg(long, env = "DUET_JOBS_HEARTBEAT_SECS", default_value_t = 10)]
    pub jobs_heartbeat_secs: u64,

    /// How long a supervised background component (relay, consumers, job workers, ...) may stay unhealthy before `/readyz` answers 503, in ms.
    #[arg(long, env = "DUET_COMPONENT_DOWN_READY_MS", default_value_t = 30_000)]
    pub component_down_ready_ms: u64,

    /// How often the projector's relay looks for outbox events written by other processes (its own process wakes it at once), in ms.
    #[arg(long, env = "DUET_RELAY_POLL_MS", default_value_t = 100)]
    pub relay_poll_ms: u64,

    /// How often the projector makes the outbox's next partitions and drops expired ones, in seconds.
    #[arg(long, env = "DUET_OUTBOX_UPKEEP_SECS", default_value_t = 60)]
    pub outbox_upkeep_secs: u64,

    /// Hours a published outbox event is kept before its partition may be dropped. Unset: kept for ever
    /// (`analytics.message_receipts` reads receipt times from the outbox, so a retention bounds its history).
    #[arg(long, env = "DUET_OUTBOX_RETENTION_HOURS")]
    pub outbox_retention_hours: Option<u64>,

    /// How often workers look for delayed jobs (new jobs wake them at once via LISTEN/NOTIFY), in ms.
    #[arg(long, env = "DUET_JOBS_POLL_MS", default_value_t = 1000)]
    pub jobs_poll_ms: u64,

    // ---- abuse limits and bounds (docs/security.md) ----
    /// Comma-separated addresses or CIDR blocks of reverse proxies whose `X-Forwarded-For` is believed;
    /// the client is the right-most address there that is not one of them. Empty: the peer address is the client.
    #[arg(long, env = "DUET_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::client_ip::parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Login attempts (any account) allowed per client IP per minute.
    #[arg(long, env = "DUET_LOGIN_PER_IP_PER_MIN", default_value_t = 30)]
    pub login_per_ip_per_min: u32,

    /// Login attempts for one account from one IP before each further one waits (1 s, doubling).
    #[arg(long, env = "DUET_LOGIN_FREE_ATTEMPTS", default_value_t = 5)]
    pub login_free_attempts: u32,

    /// Longest wait between attempts for one account from one IP, in seconds.
    #[arg(long, env = "DUET_LOGIN_BACKOFF_CAP_SECS", default_value_t = 300)]
    pub login_backoff_cap_secs: u64,

    /// Login attempts for one account from every IP together before each further one waits
    /// (1 s, doubling); an IP the account logged in from before is exempt.
    #[arg(long, env = "DUET_LOGIN_ACCOUNT_FREE_ATTEMPTS", default_value_t = 20)]
    pub login_account_free_attempts: u32,

    /// Longest wait between attempts for one account from every IP together, in seconds:
    /// the most an attacker can delay the real user from a new IP.
    #[arg(long, env = "DUET_LOGIN_ACCOUNT_BACKOFF_CAP_SECS", default_value_t = 60)]
    pub login_account_backoff_cap_secs: u64,

    /// Registrations allowed per client IP per hour.
    #[arg(long, env = "DUET_REGISTER_PER_IP_PER_HOUR", default_value_t = 10)]
    pub register_per_ip_per_hour: u32,

    /// `/users/lookup` requests allowed per user per minute, across all nodes.
    #[arg(long, env = "DUET_LOOKUP_PER_MIN", default_value_t = 60)]
    pub lookup_per_min: u32,

    /// `/search` requests allowed per user per minute, across all nodes.
    #[arg(long, env = "DUET_SEARCH_PER_MIN", default_value_t = 120)]
    pub search_per_min: u32,

    /// Seconds a client has to send a request's headers; also how long an idle keep-alive connection stays open.
    #[arg(long, env = "DUET_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,

    /// Seconds a client has to send a request's body once its headers are in; then 408.
    #[arg(long, env = "DUET_HTTP_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub http_body_timeout_secs: u64,

    /// Largest number of users in one lastSeen write.
    #[arg(long, env = "DUET_LASTSEEN_BATCH", default_value_t = 500)]
    pub lastseen_batch: usize,

    /// How often pending lastSeen entries are moved into a job, in ms.
    #[arg(long, env = "DUET_LASTSEEN_INTERVAL_MS", default_value_t = 1000)]
    pub lastseen_interval_ms: u64,

    // ---- attachments in object storage (settings/attachments.rs) ----
    #[command(flatten)]
    pub attachments: AttachmentSettings,
}

impl Settings {
    /// Settings from the environment alone, for tests and tools.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        use clap::Parser;
        Only::try_parse_from(["duet"]).map(|o| o.settings)
    }

    /// Checks settings that cannot be expressed as defaults.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.env == Environment::Production && self.jwt_secret.is_none() && self.jwt_keys.is_none() {
            anyhow::bail!("DUET_JWT_SECRET or DUET_JWT_KEYS must be set when DUET_ENV=production");
        }
        self.signing_keys()?;
        if self.append_max_batch == 0 || self.append_writers == 0 {
            anyhow::bail!("DUET_APPEND_MAX_BATCH and DUET_APPEND_WRITERS must be at least 1");
        }
        if self.db_pool_size as usize <= 2 * self.append_writers {
            anyhow::bail!(
                "DUET_DB_POOL_SIZE ({}) must exceed twice DUET_APPEND_WRITERS ({}): each receipt writer keeps a connection and each append writer uses one",
                self.db_pool_size,
                self.append_writers
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("DUET_TLS_CERT and DUET_TLS_KEY go together: set both to serve TLS, or neither");
        }
        self.attachments.validate()?;
        Ok(())
    }

    /// The JWT secret in force, warning loudly when it is the development default.
    pub fn jwt_secret(&self) -> &str {
        match &self.jwt_secret {
            Some(secret) => secret,
            None => DEV_JWT_SECRET,
        }
    }

    /// The token keys as `(kid, secret)`, the signing key last: `DUET_JWT_KEYS`,
    /// or else `DUET_JWT_SECRET` (or the development secret) as the key `default`.
    pub fn signing_keys(&self) -> anyhow::Result<Vec<(String, String)>> {
        let Some(list) = &self.jwt_keys else {
            if self.jwt_secret().len() < 32 {
                anyhow::bail!("DUET_JWT_SECRET must be at least 32 bytes");
            }
            return Ok(vec![(DEFAULT_KID.to_owned(), self.jwt_secret().to_owned())]);
        };
        if self.jwt_secret.is_some() {
            anyhow::bail!("set DUET_JWT_KEYS or DUET_JWT_SECRET, not both (the secret can be one of the keys, as `default:<secret>`)");
        }
        let mut keys: Vec<(String, String)> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((kid, secret)) = entry.split_once(':') else {
                anyhow::bail!("DUET_JWT_KEYS entries are `kid:secret`");
            };
            let kid = kid.trim();
            if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                anyhow::bail!("DUET_JWT_KEYS: a kid is 1 or more of `A-Za-z0-9._-`");
            }
            if secret.len() < 32 {
                anyhow::bail!("DUET_JWT_KEYS: the secret of `{kid}` must be at least 32 bytes");
            }
            if keys.iter().any(|(k, _)| k == kid) {
                anyhow::bail!("DUET_JWT_KEYS: `{kid}` is listed twice");
            }
            keys.push((kid.to_owned(), secret.to_owned()));
        }
        if keys.is_empty() {
            anyhow::bail!("DUET_JWT_KEYS lists no key");
        }
        Ok(keys)
    }
}

/// The key id of `DUET_JWT_SECRET` (and of the development secret).
pub const DEFAULT_KID: &str = "default";

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_env().expect("defaults parse")
    }

    #[test]
    fn production_refuses_to_start_without_a_secret() {
        let mut s = settings();
        s.jwt_secret = None;
        s.env = Environment::Production;
        assert!(s.validate().unwrap_err().to_string().contains("DUET_JWT_SECRET or DUET_JWT_KEYS"));
        s.jwt_secret = Some("x".repeat(32));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn development_falls_back_to_the_dev_secret_but_short_secrets_are_refused() {
        let mut s = settings();
        s.jwt_secret = None;
        s.env = Environment::Development;
        assert!(s.validate().is_ok());
        assert_eq!(s.jwt_secret(), DEV_JWT_SECRET);
        s.jwt_secret = Some("short".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn jwt_keys_are_kid_secret_pairs_signed_with_the_last() {
        let mut s = settings();
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        s.jwt_keys = Some(format!("old:{a}, new:{b}"));
        assert_eq!(s.signing_keys().unwrap(), vec![("old".into(), a.clone()), ("new".into(), b.clone())]);
        s.env = Environment::Production;
        assert!(s.validate().is_ok());
        for bad in [format!("old:{a},old:{b}"), "k:short".into(), format!(":{a}"), a.clone(), format!("k y:{a}"), ",".into()] {
            s.jwt_keys = Some(bad.clone());
            assert!(s.signing_keys().is_err(), "{bad:?} accepted");
        }
        s.jwt_keys = Some(format!("k:{a}"));
        s.jwt_secret = Some(b);
        assert!(s.validate().is_err(), "both set is ambiguous");
    }

    #[test]
    fn the_pool_must_leave_room_beside_the_writers_connections() {
        let mut s = settings();
        s.append_writers = 4;
        s.db_pool_size = 8;
        assert!(s.validate().unwrap_err().to_string().contains("DUET_DB_POOL_SIZE (8) must exceed"));
        s.db_pool_size = 9;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_tls_certificate_needs_its_key_and_the_key_its_certificate() {
        let mut s = settings();
        s.tls_cert = Some("server.pem".into());
        assert!(s.validate().unwrap_err().to_string().contains("DUET_TLS_CERT and DUET_TLS_KEY go together"));
        s.tls_cert = None;
        s.tls_key = Some("server.key".into());
        assert!(s.validate().is_err());
        s.tls_cert = Some("server.pem".into());
        assert!(s.validate().is_ok());
    }
}
