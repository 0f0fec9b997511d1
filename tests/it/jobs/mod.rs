//! Tests of the jobs service: pushes (against the fake FCM/APNs servers)
//! and lastSeen writes, on the real PostgreSQL and Redis.

mod lastseen;
mod measure;
mod push;
mod push_failures;
mod setup;
mod supervision;

use duet_common::ids::{ConversationId, SessionId, UserId};
use std::time::Duration;

use duet::{Application, Service};
use duet_common::Settings;
use duet_common::keys::Keys;
use fred::prelude::*;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::fake_push::FakePush;
use crate::helpers::{TestApp, TestUser};

/// Fast timings for tests: 1 s retries, 3 attempts, quick polling and heartbeats.
pub fn job_settings(settings: &mut Settings) {
    settings.push_retry_base_secs = 1;
    settings.push_max_attempts = 3;
    settings.jobs_heartbeat_secs = 1;
    settings.jobs_poll_ms = 100;
    settings.lastseen_interval_ms = 50;
}

/// A test app with push pointed at fresh fakes.
pub struct PushTest {
    pub app: TestApp,
    pub fake: FakePush,
    pub redis: fred::prelude::Pool,
    /// The same Redis as the app's presence calls reach it.
    pub fast: duet_common::redis::FastRedis,
    pub keys: Keys,
}

impl PushTest {
    pub async fn spawn() -> PushTest {
        Self::spawn_services(Service::ALL).await
    }

    pub async fn spawn_services(services: &[Service]) -> PushTest {
        Self::spawn_configured(services, |_| {}).await
    }

    pub async fn spawn_configured(services: &[Service], configure: impl FnOnce(&mut Settings)) -> PushTest {
        let fake = FakePush::start().await;
        let mut settings = crate::helpers::fresh_settings();
        fake.configure(&mut settings);
        job_settings(&mut settings);
        configure(&mut settings);
        let app = TestApp::spawn_settings(settings, services).await;
        let redis = duet_common::redis::connect(&app.settings.redis_url, app.settings.redis_ca_file.as_deref(), 1).await.unwrap();
        let keys = Keys::new(app.settings.redis_prefix.clone());
        let fast = duet_common::redis::FastRedis::new(redis.clone(), &app.settings, &duet_common::metrics::Metrics::new());
        PushTest { app, fake, redis, fast, keys }
    }

    /// Another process of the same system running only the job workers;
    /// dropping (or aborting) the handle kills it like a crash.
    pub async fn spawn_worker(&self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let app = Application::build(self.app.settings.clone(), &[Service::Jobs]).await.expect("worker builds");
        tokio::spawn(app.run_until_stopped(std::future::pending()))
    }

    /// Ann, and Bob with an iPhone (registered first) and an Android phone;
    /// returns them with Bob's two tokens, iPhone first.
    pub async fn ann_and_bob_with_two_phones(&self) -> (TestUser, TestUser, String, String) {
        let ann = self.app.register("Ann").await;
        let bob = self.app.register("Bob").await;
        let (iphone, android) = (apns_token(), fcm_token());
        self.device(&bob, "ios", &iphone).await;
        self.device(&bob, "android", &android).await;
        (ann, bob, iphone, android)
    }

    /// Ann, and Bob with an iPhone, in a conversation; returns them with
    /// the iPhone's token and the conversation.
    pub async fn ann_and_bob_with_an_iphone(&self) -> (TestUser, TestUser, String, ConversationId) {
        let ann = self.app.register("Ann").await;
        let bob = self.app.register("Bob").await;
        let iphone = apns_token();
        self.device(&bob, "ios", &iphone).await;
        let conversation = self.app.conversation(&ann, &bob).await;
        (ann, bob, iphone, conversation)
    }

    pub async fn device(&self, user: &TestUser, platform: &str, token: &str) {
        let (status, body) = self.app.post("/devices/register", Some(&user.token), json!({"platform": platform, "token": token})).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "register device: {status} {body}");
    }

    /// Marks the user online, as the gateway does on connect.
    pub async fn online(&self, user: &TestUser) {
        let came = duet_common::presence::touch(&self.fast, &self.keys, user.id, SessionId::new(), "test", 60_000).await;
        assert_eq!(came, Some(true), "presence written");
    }

    /// Adds pending last-seen times (unix ms) as the gateways do, each in its user's shard.
    pub async fn pend_last_seen(&self, entries: &[(f64, UserId)]) {
        let mut by_shard: std::collections::BTreeMap<u16, Vec<(f64, String)>> = Default::default();
        for (ms, user) in entries {
            by_shard.entry(duet_common::keys::presence_shard(*user)).or_default().push((*ms, user.to_string()));
        }
        for (shard, members) in by_shard {
            for chunk in members.chunks(5000) {
                let _: i64 = self.redis.zadd(self.keys.last_seen_pending(shard), None, None, false, false, chunk.to_vec()).await.unwrap();
            }
        }
    }

    /// Last-seen times still pending in Redis, over every shard.
    pub async fn pending_last_seen(&self) -> i64 {
        let mut pending = 0;
        for shard in 0..duet_common::keys::PRESENCE_SHARDS {
            pending += self.redis.zcard::<i64, _>(self.keys.last_seen_pending(shard)).await.unwrap();
        }
        pending
    }

    /// Waits until the push triggers have handled every event written so
    /// far: the outbox is all on the stream, and the `push` group has read
    /// and acknowledged all of it on every shard. Fails the test after 20 s.
    pub async fn triggers_caught_up(&self) {
        let streams = self.keys.event_streams(self.app.settings.stream_shards);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        'waiting: loop {
            let (unpublished, _) = duet_projector::relay::unrelayed(&self.app.db).await.unwrap();
            assert!(tokio::time::Instant::now() < deadline, "the push triggers did not catch up ({unpublished} unpublished)");
            if unpublished > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            for stream in &streams {
                if !self.group_caught_up(stream).await {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue 'waiting;
                }
            }
            return;
        }
    }

    /// Whether the `push` group has read and acknowledged everything on `stream`.
    async fn group_caught_up(&self, stream: &str) -> bool {
        let groups: Value = self.redis.xinfo_groups(stream).await.unwrap_or(Value::Null);
        // XINFO GROUPS: one [field, value, ...] list per group.
        let field =
            |fields: &[Value], name: &str| fields.chunks(2).find(|p| p[0].as_string().as_deref() == Some(name)).map(|p| p[1].clone());
        let push: Option<Vec<Value>> = groups
            .into_array()
            .into_iter()
            .map(|g| g.into_array())
            .find(|fields| field(fields, "name").and_then(|v| v.as_string()).as_deref() == Some(duet_jobs::trigger::GROUP));
        let count = |name: &str| push.as_deref().and_then(|fields| field(fields, name)).and_then(|v| v.as_i64());
        count("lag") == Some(0) && count("pending") == Some(0)
    }

    /// Waits until at least `min` jobs are on `queue` and all have finished
    /// (done or dead); fails the test after 20 s.
    pub async fn settled(&self, queue: &str, min: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (open, all): (i64, i64) = sqlx::query_as(
                "select count(*) filter (where status not in ('Done', 'Failed', 'Killed')), count(*) \
                 from apalis.jobs where job_type = $1",
            )
            .bind(queue)
            .fetch_one(&self.app.db)
            .await
            .unwrap();
            if open == 0 && all >= min {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "jobs on {queue} did not settle: {open} open of {all}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn jobs(&self, queue: &str) -> Vec<(String, serde_json::Value)> {
        sqlx::query_as("select status, convert_from(job, 'UTF8')::jsonb from apalis.jobs where job_type = $1 order by run_at, id")
            .bind(queue)
            .fetch_all(&self.app.db)
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.app.metrics().await
    }

    pub async fn device_tokens(&self, user: &TestUser) -> Vec<String> {
        sqlx::query_scalar("select token from device_tokens where user_id = $1 order by token")
            .bind(user.id)
            .fetch_all(&self.app.db)
            .await
            .unwrap()
    }
}

/// An APNs device token: 64 hex characters.
pub fn apns_token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// An FCM registration token (opaque to us).
pub fn fcm_token() -> String {
    format!("fcm:{}", Uuid::new_v4().simple())
}

/// A counter's value in the Prometheus text, 0 if absent.
pub fn counter(metrics: &str, name: &str, kind: &str) -> u64 {
    let prefix = format!("duet_{name}_total{{kind=\"{kind}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}
