//! Supervised workers: the job workers outlive a PostgreSQL outage, and
//! `/readyz` shows a component that keeps failing, then its recovery.
//!
//! Faults stay inside the test's own database: its job table is renamed
//! away (every fetch of the workers fails, as during an outage), and the
//! app's connections to it are terminated (as in a PostgreSQL restart).

use std::time::Duration;

use duet_jobs::queue::PUSH_QUEUE;
use reqwest::StatusCode;
use serde_json::Value;

use super::PushTest;

/// `/readyz`, once it satisfies `want`; fails the test after 20 s.
async fn readyz_until(t: &PushTest, what: &str, want: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, ready) = t.app.get("/readyz", None).await;
        if want(status, &ready) {
            return ready;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz never showed {what}: {status} {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `sql` on the test's database from a connection of its own.
async fn on_database(t: &PushTest, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&t.app.settings.database_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn job_workers_restart_after_their_database_fails_and_deliver_a_push() {
    let t = PushTest::spawn_configured(duet::Service::ALL, |s| s.component_down_ready_ms = 300).await;
    let (ann, _bob, iphone, conversation) = t.ann_and_bob_with_an_iphone().await;
    readyz_until(&t, "a healthy push worker", |status, r| status == StatusCode::OK && r["components"]["push-worker"]["healthy"] == true)
        .await;

    // Every fetch fails: the workers die ("fetch_next failed") and, restarted, fail again.
    on_database(&t, "alter table apalis.jobs rename to jobs_away").await;
    let down = readyz_until(&t, "a push worker down too long", |status, r| {
        // The lastseen worker may be the one that turned readiness off first.
        let push = &r["components"]["push-worker"];
        status == StatusCode::SERVICE_UNAVAILABLE && push["healthy"] == false && push["downForMs"].as_u64() > Some(300)
    })
    .await;
    assert_eq!(down["ready"], false);
    assert_eq!(down["postgres"], true);
    assert!(down["components"]["push-worker"]["restarts"].as_u64().unwrap() >= 1, "{down}");
    assert!(down["components"]["lastseen-worker"]["restarts"].as_u64().unwrap() >= 1, "{down}");

    on_database(&t, "alter table apalis.jobs_away rename to jobs").await;
    let back = readyz_until(&t, "every component healthy again", |status, r| {
        status == StatusCode::OK && r["components"].as_object().unwrap().values().all(|c| c["healthy"] == true)
    })
    .await;
    assert_eq!(back["components"]["push-worker"]["downForMs"], 0);
    let metrics = t.metrics().await;
    assert!(metrics.contains(r#"duet_component_restarts_total{component="push-worker"}"#), "{metrics}");

    // A PostgreSQL restart, as the app sees it: every connection it had is gone.
    let name = t.app.settings.database_url.rsplit('/').next().unwrap().to_owned();
    on_database(
        &t,
        &format!("select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}' and pid <> pg_backend_pid()"),
    )
    .await;

    // A push enqueued afterwards is delivered. The send may meet a connection
    // that died under it (an error a client retries, as here, with the same id).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = t.app.send(&ann, conversation, "after-the-outage", "after the outage").await;
        if status.is_success() {
            break;
        }
        assert!(status.is_server_error() && tokio::time::Instant::now() < deadline, "{status} {body}");
    }
    t.fake.wait_requests(&iphone, 1).await;
    t.settled(PUSH_QUEUE, 1).await;
}
