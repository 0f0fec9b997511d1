//! A Redis that stops answering (SIGSTOP: its socket stays open, nothing
//! comes back) must not stall chat: sends are acked, new WebSockets are
//! authenticated, presence says `unknown`, and all of it recovers when
//! Redis does. Each test runs its own redis-server on a free port; the
//! shared one is never paused.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use duet_common::protocol::ServerKind;
use duet_common::ratelimit::{Decision, RateLimiter};
use duet_common::redis::FastRedis;
use duet_common::settings::Settings;
use duet_common::throttle::{Backoff, Window};
use tokio::time::Instant;

use crate::helpers::{TestApp, fresh_settings};
use crate::ws::{WAIT, WsClient};

/// Far below the 2 s command timeout a stalled send used to wait out per call.
const PROMPT: Duration = Duration::from_millis(1_000);

/// A redis-server of this test's own, killed (after a SIGCONT) when dropped.
struct PrivateRedis {
    child: Child,
    port: u16,
}

/// While it lives, the private Redis is stopped (SIGSTOP); dropping it resumes Redis.
struct Paused<'a>(&'a PrivateRedis);

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = PrivateRedis { child, port };
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the private redis-server never listened on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pause(&self) -> Paused<'_> {
        self.signal("STOP");
        Paused(self)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port in 20000-40000 that nothing listens on right now.
fn free_port() -> u16 {
    for _ in 0..100 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-40000");
}

/// Settings of a node on `redis`, with the production Redis deadline and a short breaker cool-down.
fn settings_on(redis: &PrivateRedis) -> Settings {
    let mut settings = fresh_settings();
    settings.redis_url = redis.url();
    settings.redis_fast_timeout_ms = 150;
    settings.redis_breaker_cooldown_ms = 300;
    settings
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Polls `/readyz` until its `redis` is `want` (the probe runs after each cool-down).
async fn await_redis_ready(app: &TestApp, want: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = app.get("/readyz", None).await;
        if body["redis"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz never said redis={want}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stalled_redis_degrades_sends_auth_and_presence_and_they_recover_when_it_answers() {
    let redis = PrivateRedis::start().await;
    let app = TestApp::spawn_settings(settings_on(&redis), duet::Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    // Presence is shown to contacts by default (tests/it/privacy.rs); here to everyone.
    app.set_presence_visibility(&bob, "everyone").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;
    let mut b = WsClient::connect(&app, &bob).await;
    a.send_message(conversation, "before").await;
    assert_eq!(b.next_message().await["text"], "before");

    let paused = redis.pause();
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        let ack = a.send_message(conversation, &format!("m{i}")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(ack["seq"], 2 + i, "acked in order: {ack}");
    }
    assert!(slowest < PROMPT, "a send waited {slowest:?} on the stalled Redis");
    for i in 0..50 {
        let message = b.next_message().await;
        assert_eq!((message["seq"].as_i64(), message["text"].as_str()), (Some(2 + i), Some(format!("m{i}").as_str())));
    }
    assert_eq!(metric(&app, "duet_redis_breaker_open").await, 1.0);
    assert!(metric(&app, "duet_redis_breaker_trips_total").await >= 1.0);

    let started = Instant::now();
    let mut late = WsClient::connect(&app, &bob).await;
    assert!(started.elapsed() < PROMPT, "auth.ok took {:?} with Redis stalled", started.elapsed());
    let id = a.presence_subscribe(&[bob.id]).await;
    let update = a.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
    assert_eq!(update["status"], "unknown", "Redis cannot tell: {update}");
    let (_, ready) = app.get("/readyz", None).await;
    assert_eq!(ready["redis"], false, "{ready}");

    drop(paused);
    await_redis_ready(&app, true).await;
    assert_eq!(metric(&app, "duet_redis_breaker_open").await, 0.0);
    let id = a.presence_subscribe(&[bob.id]).await;
    let update = a.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
    assert_eq!(update["status"], "online", "{update}");
    let ack = a.send_message(conversation, "after").await;
    assert_eq!(ack["seq"], 52);
    // (It may first be pushed what its user has not marked delivered: its resync once subscribed.)
    let live = late.next_matching(ServerKind::Message, |m| m["message"]["seq"] == 52).await;
    assert_eq!(live["message"]["text"], "after", "the session opened during the stall is live");
}

/// Messages whose Redis publish was dropped while Redis was stalled reach a
/// receiver on another node once it answers, with nothing sent after them
/// to reveal the gap: the sending node owes the receiver a resync.
#[tokio::test]
async fn messages_dropped_while_redis_stalls_reach_a_receiver_on_another_node_after_it_recovers() {
    let redis = PrivateRedis::start().await;
    let a_node = TestApp::spawn_settings(settings_on(&redis), duet::Service::ALL).await;
    let b_node = a_node.spawn_peer().await;
    let ann = a_node.register("Ann").await;
    let bob = a_node.register("Bob").await;
    let conversation = a_node.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&a_node, &ann).await;
    let mut b = WsClient::connect(&b_node, &bob).await;
    a.send_message(conversation, "before").await;
    assert_eq!(b.next_message().await["seq"], 1);

    let paused = redis.pause();
    for i in 0..10 {
        a.send_message(conversation, &format!("m{i}")).await;
    }
    assert!(metric(&a_node, "duet_live_publish_dropped_total").await >= 1.0, "the breaker opened and publishes were dropped");
    drop(paused);

    for seq in 2..=11 {
        let message = b.next_message().await;
        assert_eq!(message["seq"], seq, "in order, each once: {message}");
    }
}

/// With Redis stalled, the send limit is this node's own bucket of the same
/// rate and burst: it refuses beyond the budget instead of allowing everything.
#[tokio::test]
async fn the_rate_limiter_falls_back_to_a_local_bucket_while_redis_is_stalled() {
    let redis = PrivateRedis::start().await;
    let settings = settings_on(&redis);
    let pool = duet_common::redis::connect(&redis.url(), None, 1).await.unwrap();
    let fast = FastRedis::new(pool, &settings, &duet_common::metrics::Metrics::new());
    let limiter = RateLimiter::new(1, 5);
    assert_eq!(limiter.check(&fast, "rl:up").await, Decision::Allowed, "Redis decides while it answers");

    let _paused = redis.pause();
    let started = Instant::now();
    let decisions: Vec<Decision> = futures_util::future::join_all((0..6).map(|_| limiter.check(&fast, "rl:stalled"))).await;
    let mut allowed = 0;
    for decision in &decisions {
        match decision {
            Decision::AllowedLocally => allowed += 1,
            Decision::Limited { retry_after_ms } => assert!(*retry_after_ms > 0),
            Decision::Allowed => panic!("Redis is stalled"),
        }
    }
    assert_eq!(allowed, 5, "the local bucket holds the burst: {decisions:?}");
    let refused = limiter.check(&fast, "rl:stalled").await;
    assert!(matches!(refused, Decision::Limited { .. }), "over budget: {refused:?}");
    assert!(started.elapsed() < PROMPT, "checks waited {:?}", started.elapsed());
}

/// With Redis stalled, the login and registration throttles (a window, a
/// backoff) decide on this node's own records with the same rules: the
/// budget, then refusals saying when to come back; a success clears the backoff.
#[tokio::test]
async fn the_login_and_registration_throttles_decide_locally_while_redis_is_stalled() {
    let redis = PrivateRedis::start().await;
    let settings = settings_on(&redis);
    let pool = duet_common::redis::connect(&redis.url(), None, 1).await.unwrap();
    let fast = FastRedis::new(pool, &settings, &duet_common::metrics::Metrics::new());
    let window = Window::new(3, Duration::from_secs(3600));
    let backoff = Backoff::new(2, Duration::from_secs(60));
    assert_eq!(window.check(&fast, "rl:register:up").await, Decision::Allowed, "Redis decides while it answers");
    assert_eq!(backoff.attempt(&fast, "rl:login:up").await, Decision::Allowed);

    let _paused = redis.pause();
    for i in 0..3 {
        assert_eq!(window.check(&fast, "rl:register:stalled").await, Decision::AllowedLocally, "request {i} of the window's 3");
    }
    match window.check(&fast, "rl:register:stalled").await {
        Decision::Limited { retry_after_ms } => assert!(retry_after_ms > 3_500_000 && retry_after_ms <= 3_600_000, "{retry_after_ms}"),
        other => panic!("a fourth registration in the hour: {other:?}"),
    }
    assert_eq!(window.check(&fast, "rl:register:other").await, Decision::AllowedLocally, "each key has its own window");

    // Two free attempts, a third that starts a 1 s wait, then refusals until it ends.
    for i in 0..2 {
        assert_eq!(backoff.attempt(&fast, "rl:login:stalled").await, Decision::AllowedLocally, "attempt {i}");
    }
    let third = Instant::now();
    assert_eq!(backoff.attempt(&fast, "rl:login:stalled").await, Decision::AllowedLocally, "the third attempt");
    match backoff.attempt(&fast, "rl:login:stalled").await {
        Decision::Limited { retry_after_ms } => assert!(retry_after_ms > 0 && retry_after_ms <= 1_000, "{retry_after_ms}"),
        // (Only if this machine stalled past the wait.)
        other => assert!(third.elapsed() >= Duration::from_secs(1), "an attempt inside the wait: {other:?}"),
    }
    backoff.clear(&fast, "rl:login:stalled").await;
    assert_eq!(backoff.attempt(&fast, "rl:login:stalled").await, Decision::AllowedLocally, "a success starts the count again");
}
