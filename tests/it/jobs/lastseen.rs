//! lastSeen: written after a clean close and after presence expiry, in
//! batches, never backwards.

use duet_common::ids::{SessionId, UserId};
use std::time::Duration;

use chrono::{DateTime, Utc};
use duet::Service;
use duet_common::{last_seen, presence};
use duet_jobs::queue::LASTSEEN_QUEUE;

use super::{PushTest, counter};

/// Waits until the user's `last_seen_at` is `expected`; fails after 20 s.
async fn wait_last_seen(t: &PushTest, user: UserId, expected: DateTime<Utc>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Option<DateTime<Utc>> =
            sqlx::query_scalar("select last_seen_at from users where id = $1").bind(user).fetch_one(&t.app.db).await.unwrap();
        if seen == Some(expected) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "last_seen_at is {seen:?}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every service but the gateway: its presence sweeper would race the
/// test's own [`sweep`] for the ended presence, and win some of the time.
async fn spawn_without_sweeper() -> PushTest {
    PushTest::spawn_services(&[Service::CommandApi, Service::QueryApi, Service::Projector, Service::Jobs]).await
}

/// Claims ended presences like the gateway's sweeper and records them.
async fn sweep(t: &PushTest) -> Vec<(UserId, DateTime<Utc>)> {
    let ended = presence::claim_expired(&t.redis, &t.keys, 100).await;
    for (user, at) in &ended {
        last_seen::record(&t.redis, &t.keys, *user, *at).await;
    }
    ended
}

#[tokio::test]
async fn last_seen_is_written_after_the_last_session_closes() {
    let t = spawn_without_sweeper().await;
    let bob = t.app.register("Bob").await;
    let session = SessionId::new();
    presence::touch(&t.fast, &t.keys, bob.id, session, "test", 60_000).await;
    assert_eq!(presence::leave(&t.fast, &t.keys, bob.id, session).await, Some(true));
    let ended = sweep(&t).await;
    assert_eq!(ended.len(), 1);

    wait_last_seen(&t, bob.id, ended[0].1).await;
    let (_, user) = t.app.get(&format!("/users/{}", bob.id), Some(&bob.token)).await;
    let shown: DateTime<Utc> = user["lastSeenAt"].as_str().expect("lastSeenAt shown").parse().unwrap();
    assert_eq!(shown, ended[0].1);
}

#[tokio::test]
async fn last_seen_is_written_after_presence_expires_without_a_close() {
    let t = spawn_without_sweeper().await;
    let bob = t.app.register("Bob").await;
    presence::touch(&t.fast, &t.keys, bob.id, SessionId::new(), "test", 200).await;
    // The session never closes; its presence key expires on its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let ended = sweep(&t).await;
        if !ended.is_empty() {
            break ended;
        }
        assert!(tokio::time::Instant::now() < deadline, "presence never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended[0].0, bob.id);
    wait_last_seen(&t, bob.id, ended[0].1).await;
}

#[tokio::test]
async fn a_burst_of_disconnects_is_written_in_few_batches_and_never_backwards() {
    let mut settings = crate::helpers::fresh_settings();
    super::job_settings(&mut settings);
    settings.lastseen_batch = 100;
    let app = crate::helpers::TestApp::spawn_settings(settings, Service::ALL).await;
    let redis = duet_common::redis::connect(&app.settings.redis_url, app.settings.redis_ca_file.as_deref(), 1).await.unwrap();
    let keys = duet_common::keys::Keys::new(app.settings.redis_prefix.clone());
    let fast = duet_common::redis::FastRedis::new(redis.clone(), &app.settings, &duet_common::metrics::Metrics::new());
    let t = PushTest { app, fake: crate::fake_push::FakePush::start().await, redis, fast, keys };

    let ids: Vec<UserId> = (0..1000).map(|_| UserId::new()).collect();
    sqlx::query(
        "insert into users (id, email, name, password_hash) \
         select id, id::text || '@example.com', 'burst', 'x' from unnest($1::uuid[]) as id",
    )
    .bind(&ids)
    .execute(&t.app.db)
    .await
    .unwrap();
    let base = Utc::now().timestamp_millis();
    let future = DateTime::from_timestamp_millis(base + 3_600_000).unwrap();
    sqlx::query("update users set last_seen_at = $2 where id = $1").bind(ids[0]).bind(future).execute(&t.app.db).await.unwrap();

    // A thousand users go offline at once (one command, as a burst lands).
    let members: Vec<(f64, UserId)> = ids.iter().enumerate().map(|(i, id)| ((base + i as i64) as f64, *id)).collect();
    t.pend_last_seen(&members).await;

    let last = ids[999];
    wait_last_seen(&t, last, DateTime::from_timestamp_millis(base + 999).unwrap()).await;
    t.settled(LASTSEEN_QUEUE, 10).await;
    let written: i64 = sqlx::query_scalar(
        "select count(*) from users where id = any($1) and last_seen_at = to_timestamp(($2::int8 + array_position($1, id) - 1) / 1000.0)",
    )
    .bind(&ids)
    .bind(base)
    .fetch_one(&t.app.db)
    .await
    .unwrap();
    assert_eq!(written, 999, "all but the user already seen later");
    let kept: DateTime<Utc> =
        sqlx::query_scalar("select last_seen_at from users where id = $1").bind(ids[0]).fetch_one(&t.app.db).await.unwrap();
    assert_eq!(kept, future, "never moved backwards");
    assert_eq!(t.jobs(LASTSEEN_QUEUE).await.len(), 10, "1000 entries, batches of 100");
    assert_eq!(t.pending_last_seen().await, 0);
    assert_eq!(counter(&t.metrics().await, "jobs_succeeded", "lastseen"), 10);
}
