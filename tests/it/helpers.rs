//! `TestApp`: a running Duet process for one test, plus a client with one
//! method per endpoint so tests read as behaviour.
//!
//! Each test gets its own database and Redis key prefix on the servers named
//! by `DUET_TEST_DATABASE_URL` and `DUET_TEST_REDIS_URL` (README,
//! Development). When the last `TestApp` on them is dropped and the test has
//! not failed, both are dropped; a failing test leaves them for inspection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use duet::{Application, Service};
use duet_common::Settings;
use duet_common::ids::{ConversationId, UserId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Any database on the test server; each test swaps in its own name.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin listener: `/metrics` and the API page.
    pub admin_addr: SocketAddr,
    pub settings: Settings,
    /// The test's own database, for assertions on stored state.
    pub db: PgPool,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The password of every [`TestUser`]: strong enough for the strength rule.
pub const PASSWORD: &str = "plum orbit garden 71";

#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: UserId,
    pub token: String,
    pub email: String,
    /// The refresh token of the sign-in made by registering.
    pub refresh_token: String,
}

/// Settings for a fresh database and Redis prefix.
pub fn fresh_settings() -> Settings {
    let name = format!("duet_test_{}", Uuid::new_v4().simple());
    let mut settings = Settings::from_env().expect("default settings");
    settings.database_url = with_database(&test_database_url(), &name);
    settings.database_replica_url = None;
    settings.redis_url = std::env::var("DUET_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into());
    settings.redis_prefix = format!("duet:test:{}:", Uuid::new_v4().simple());
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    settings.admin_addr = "127.0.0.1:0".parse().unwrap();
    settings.db_pool_size = 10;
    // Generous limits, so only the rate-limit tests meet them.
    settings.rate_limit_per_sec = 100_000;
    settings.rate_limit_burst = 100_000;
    // A loaded test machine may answer late; only the Redis fault tests use the short production deadline.
    settings.redis_fast_timeout_ms = 1_000;
    settings.register_per_ip_per_hour = 100_000;
    settings.login_per_ip_per_min = 100_000;
    settings.lookup_per_min = 100_000;
    settings.search_per_min = 100_000;
    settings.attachments.attachment_uploads_per_hour = 100_000;
    // Attachments are off unless a test asks for the local S3 server (`with_s3`).
    settings.attachments.s3_endpoint = None;
    settings.attachments.s3_public_endpoint = None;
    settings
}

/// Points `settings` at the S3 server named by `DUET_TEST_S3_*` (scripts/test
/// starts one: scripts/s3.sh). Fails the test when it is not set: a test that
/// needs object storage never passes without it.
pub fn with_s3(settings: &mut Settings) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the tests with scripts/test, or `source scripts/services.sh; source scripts/s3.sh; ensure_s3` first"
            )
        })
    };
    let attachments = &mut settings.attachments;
    attachments.s3_endpoint = Some(var("DUET_TEST_S3_ENDPOINT"));
    attachments.s3_access_key = Some(var("DUET_TEST_S3_ACCESS_KEY").as_str().into());
    attachments.s3_secret_key = Some(var("DUET_TEST_S3_SECRET_KEY").as_str().into());
    attachments.s3_bucket = var("DUET_TEST_S3_BUCKET");
    attachments.s3_region = var("DUET_TEST_S3_REGION");
}

/// `DUET_TEST_DATABASE_URL`: a database on the PostgreSQL server the tests use.
pub fn test_database_url() -> String {
    std::env::var("DUET_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into())
}

/// `url` with its database (the path) replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("a database URL: {url} ({e})"));
    url.set_path(name);
    url.into()
}

/// How many running `TestApp`s use each database (nodes of one system share
/// it): the last one dropped cleans up.
static NODES: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn node_started(settings: &Settings) {
    let mut nodes = NODES.lock().unwrap_or_else(PoisonError::into_inner);
    *nodes.entry(settings.database_url.clone()).or_default() += 1;
}

/// Whether this was the last node on the database.
fn node_gone(settings: &Settings) -> bool {
    let mut nodes = NODES.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(count) = nodes.get_mut(&settings.database_url) else { return false };
    *count -= 1;
    if *count > 0 {
        return false;
    }
    nodes.remove(&settings.database_url);
    true
}

/// Drops the test's database (closing its connections) and deletes every
/// Redis key under its prefix.
pub async fn drop_test_data(settings: &Settings) -> anyhow::Result<()> {
    use anyhow::Context;
    use fred::prelude::*;
    use sqlx::{AssertSqlSafe, Connection, Executor};

    let name = reqwest::Url::parse(&settings.database_url)?.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(name.starts_with("duet_test_"), "not a test database: {name}");
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let mut admin = sqlx::PgConnection::connect(&test_database_url()).await.context("Failed to connect to PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("select exists (select from pg_database where datname = $1)").bind(&name).fetch_one(&mut admin).await?;
    if exists {
        // Nodes of the test may still run (a read side on threads of its
        // own) and reconnect at once: no new connections, then drop.
        admin.execute(AssertSqlSafe(format!("alter database {quoted} with allow_connections false"))).await?;
        admin
            .execute(AssertSqlSafe(format!("drop database if exists {quoted} with (force)")))
            .await
            .context("Failed to drop the test database")?;
    }
    admin.close().await?;
    let redis = Builder::from_config(duet_common::redis::config(&settings.redis_url, settings.redis_ca_file.as_deref())?).build()?;
    redis.init().await.context("Failed to connect to Redis")?;
    let keys = duet_common::redis::scan_all(&redis, format!("{}*", settings.redis_prefix)).await?;
    duet_common::redis::delete_all(&redis, keys).await?;
    redis.quit().await?;
    Ok(())
}

/// `drop_test_data` from a synchronous `Drop`: on a thread and runtime of its own.
fn drop_test_data_now(settings: &Settings) {
    let settings = settings.clone();
    let dropped =
        std::thread::spawn(move || tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(drop_test_data(&settings)))
            .join();
    match dropped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: the test's database and Redis keys were not dropped: {e:#}"),
        Err(_) => eprintln!("warning: dropping the test's database and Redis keys panicked"),
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = fresh_settings();
        configure(&mut settings);
        Self::spawn_settings(settings, Service::ALL).await
    }

    /// Another node of the same system (same database and Redis prefix).
    pub async fn spawn_peer(&self) -> TestApp {
        let mut settings = self.settings.clone();
        settings.http_addr = "127.0.0.1:0".parse().unwrap();
        Self::spawn_settings(settings, Service::ALL).await
    }

    /// Another node of the same system (same database) whose Redis does not
    /// answer: nothing listens on port 1.
    pub async fn spawn_cut_off_peer(&self, services: &[Service]) -> TestApp {
        let mut settings = self.settings.clone();
        settings.http_addr = "127.0.0.1:0".parse().unwrap();
        settings.redis_url = "redis://127.0.0.1:1".into();
        Self::spawn_settings(settings, services).await
    }

    pub async fn spawn_settings(settings: Settings, services: &[Service]) -> TestApp {
        duet_common::telemetry::init_for_tests();
        let app = Application::build(settings.clone(), services).await.expect("the app builds");
        let (addr, admin_addr) = (app.local_addr(), app.admin_addr());
        let db = app.context().db.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        node_started(&settings);
        TestApp { addr, admin_addr, settings, db, http: reqwest::Client::new(), stop: Some(stop), server: Some(server) }
    }

    /// Stops the node gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }

    /// The underlying client, for requests that need headers.
    pub fn http_raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// The node's `/metrics` text, from the admin listener.
    pub async fn metrics(&self) -> String {
        let resp = self.http.get(self.admin_url("/metrics")).send().await.expect("metrics requested");
        assert_eq!(resp.status(), StatusCode::OK, "/metrics on the admin listener");
        resp.text().await.expect("metrics read")
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{}-{}@example.com", name.to_lowercase(), Uuid::new_v4().simple());
        let (status, body) = self.post("/auth/register", None, json!({"email": email, "password": PASSWORD, "name": name})).await;
        assert_eq!(status, StatusCode::CREATED, "register: {body}");
        TestUser {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            token: body["token"].as_str().unwrap().into(),
            email,
            refresh_token: body["refreshToken"].as_str().unwrap().into(),
        }
    }

    /// Creates (or gets) the conversation between two users; returns its id.
    pub async fn conversation(&self, a: &TestUser, b: &TestUser) -> ConversationId {
        let (status, body) = self.post("/conversations", Some(&a.token), json!({"peerId": b.id})).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "conversation: {status} {body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn send(&self, from: &TestUser, conversation: ConversationId, client_msg_id: &str, text: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/conversations/{conversation}/messages"),
            Some(&from.token),
            json!({"clientMsgId": client_msg_id, "text": text}),
        )
        .await
    }

    /// Sets who sees `user`'s presence: `everyone`, `contacts` or `nobody`.
    pub async fn set_presence_visibility(&self, user: &TestUser, presence: &str) {
        let (status, body) = self.post("/me/privacy", Some(&user.token), json!({"presence": presence})).await;
        assert_eq!(status, StatusCode::OK, "set privacy: {body}");
        assert_eq!(body["presence"], presence);
    }

    /// `blocker` blocks `blocked`.
    pub async fn block(&self, blocker: &TestUser, blocked: &TestUser) {
        let (status, body) = self.post(&format!("/users/{}/block", blocked.id), Some(&blocker.token), json!({})).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "block: {body}");
    }

    /// `blocker` lifts their block of `blocked`.
    pub async fn unblock(&self, blocker: &TestUser, blocked: &TestUser) {
        let (status, body) = self.post(&format!("/users/{}/unblock", blocked.id), Some(&blocker.token), json!({})).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "unblock: {body}");
    }

    /// `(last_delivered_seq, last_read_seq)` of `user` as stored.
    pub async fn stored_markers(&self, conversation: ConversationId, user: &TestUser) -> (i64, i64) {
        sqlx::query_as("select last_delivered_seq, last_read_seq from conversation_members where conversation_id = $1 and user_id = $2")
            .bind(conversation)
            .bind(user.id)
            .fetch_one(&self.db)
            .await
            .expect("member row")
    }

    /// Sends and expects 201; returns the stored message.
    pub async fn send_ok(&self, from: &TestUser, conversation: ConversationId, text: &str) -> Value {
        let (status, body) = self.send(from, conversation, &Uuid::new_v4().simple().to_string(), text).await;
        assert_eq!(status, StatusCode::CREATED, "send: {body}");
        body
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A failing test (unwinding) leaves its data for inspection.
        if node_gone(&self.settings) && !std::thread::panicking() {
            drop_test_data_now(&self.settings);
        }
    }
}

/// Asserts an error response: status and stable code.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "body: {}", response.1);
    assert_eq!(response.1["code"], code, "body: {}", response.1);
    assert!(response.1["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {}", response.1);
}
