//! Reads on the real streaming replica (scripts/replica.sh sets it up; the
//! tests fail, never skip, when it is not there).
//!
//! Replay pause is cluster-wide, so these tests take a PostgreSQL advisory
//! lock on the primary and run one at a time, even across test processes.

use duet_common::ids::ConversationId;
use std::time::Duration;

use duet_common::Settings;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::helpers::{TestApp, TestUser, fresh_settings, test_database_url, with_database};
use crate::read_side_support::eventually;

const REPLICA_LOCK: i64 = 0x0d0e_7ea1;

/// The replica's admin URL: `DUET_TEST_REPLICA_URL`, or the default port.
fn replica_admin_url() -> String {
    std::env::var("DUET_TEST_REPLICA_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".into())
}

/// The second replica's admin URL: `DUET_TEST_REPLICA2_URL`, or the default port.
fn replica2_admin_url() -> String {
    std::env::var("DUET_TEST_REPLICA2_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5434/postgres".into())
}

/// Held while a test uses the replica; dropping the connection releases the lock.
struct ReplicaGuard {
    _lock: PgConnection,
    admin: PgConnection,
}

async fn take_replica() -> ReplicaGuard {
    let mut lock = PgConnection::connect(&test_database_url()).await.expect("the primary");
    sqlx::query("select pg_advisory_lock($1)").bind(REPLICA_LOCK).execute(&mut lock).await.unwrap();
    let url = replica_admin_url();
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("no replica at {url} ({e}); run scripts/replica.sh (scripts/test does)"));
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()").fetch_one(&mut admin).await.unwrap();
    assert!(in_recovery, "{url} is not a replica");
    // A test that failed while replay was paused must not poison the next.
    resume(&mut admin).await;
    ReplicaGuard { _lock: lock, admin }
}

async fn resume(admin: &mut PgConnection) {
    sqlx::query("select pg_wal_replay_resume() where pg_get_wal_replay_pause_state() <> 'not paused'").execute(admin).await.unwrap();
}

/// Settings for a fresh database whose replica URL points at the same database on the replica.
fn replica_settings() -> Settings {
    let mut settings = fresh_settings();
    let name = settings.database_url.rsplit('/').next().unwrap().to_owned();
    settings.database_replica_url = Some(with_database(&replica_admin_url(), &name));
    settings
}

/// Waits until the replica has replayed the conversation up to `seq`.
async fn replicated(app: &TestApp, conversation: ConversationId, seq: i64) {
    replicated_on(app.settings.database_replica_url.clone().unwrap(), conversation, seq).await
}

/// Waits until the replica at `url` has replayed the conversation up to `seq`.
async fn replicated_on(url: String, conversation: ConversationId, seq: i64) {
    eventually("the replica to catch up", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.ok()?;
            let last: i64 = sqlx::query_scalar("select last_seq from conversations where id = $1")
                .bind(conversation)
                .fetch_optional(&mut conn)
                .await
                .ok()??;
            (last >= seq).then_some(())
        }
    })
    .await
}

async fn page(app: &TestApp, token: &str, path: &str) -> (Vec<i64>, String) {
    let resp = app.http_raw().get(app.url(path)).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let source = resp.headers().get("x-duet-read-source").expect("read source header").to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    (body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect(), source)
}

/// A node reading history from the replica, and Ann's three messages to Bob.
async fn three_messages_on_a_replica_backed_node() -> (TestApp, TestUser, TestUser, ConversationId) {
    three_messages_on(replica_settings()).await
}

/// A node with `settings`, and Ann's three messages to Bob.
async fn three_messages_on(settings: Settings) -> (TestApp, TestUser, TestUser, ConversationId) {
    let app = TestApp::spawn_settings(settings, duet::Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    for i in 1..=3 {
        app.send_ok(&ann, conversation, &format!("m{i}")).await;
    }
    (app, ann, bob, conversation)
}

#[tokio::test]
async fn history_is_served_by_the_streaming_replica() {
    let _replica = take_replica().await;
    let (app, _ann, bob, conversation) = three_messages_on_a_replica_backed_node().await;
    replicated(&app, conversation, 3).await;
    let path = format!("/conversations/{conversation}/messages?minSeq=3");
    // The header is `pg_is_in_recovery()` of the connection that ran the query.
    assert_eq!(page(&app, &bob.token, &path).await, (vec![1, 2, 3], "replica".to_owned()));
    let (_, search) = app.get("/search?q=m2", Some(&bob.token)).await;
    assert_eq!(search["items"][0]["seq"], 2, "{search}");
}

#[tokio::test]
async fn read_your_writes_holds_while_replica_replay_is_paused() {
    let mut replica = take_replica().await;
    let (app, ann, bob, conversation) = three_messages_on_a_replica_backed_node().await;
    replicated(&app, conversation, 3).await;

    sqlx::query("select pg_wal_replay_pause()").execute(&mut replica.admin).await.unwrap();
    let paused = async {
        eventually("replay to pause", Duration::from_secs(10), || async {
            let mut conn = PgConnection::connect(&replica_admin_url()).await.ok()?;
            let state: String = sqlx::query_scalar("select pg_get_wal_replay_pause_state()").fetch_one(&mut conn).await.ok()?;
            (state == "paused").then_some(())
        })
        .await;
        let sent = app.send_ok(&ann, conversation, "m4").await;
        let seq = sent["seq"].as_i64().unwrap();
        let base = format!("/conversations/{conversation}/messages");
        (
            seq,
            page(&app, &bob.token, &base).await,
            page(&app, &ann.token, &format!("{base}?afterSeq=3&minSeq={seq}")).await,
            page(&app, &ann.token, &format!("{base}?minSeq={seq}")).await,
        )
    }
    .await;
    resume(&mut replica.admin).await;
    let (seq, unhinted, after_hinted, hinted) = paused;

    assert_eq!(seq, 4);
    // Without a hint the replica answers, and (replay paused) lacks seq 4.
    assert_eq!(unhinted, (vec![1, 2, 3], "replica".to_owned()));
    // With one, the page holds what the client knows exists: from the primary.
    assert_eq!(after_hinted, (vec![4], "primary".to_owned()));
    assert_eq!(hinted, (vec![1, 2, 3, 4], "primary".to_owned()));
    let metrics = app.metrics().await;
    assert!(metrics.contains("duet_query_history_reads_total{source=\"primary_fallback\"} 2"), "{metrics}");

    // Once replay resumes, the replica serves the hinted read again.
    replicated(&app, conversation, 4).await;
    let path = format!("/conversations/{conversation}/messages?minSeq=4");
    assert_eq!(page(&app, &bob.token, &path).await, (vec![1, 2, 3, 4], "replica".to_owned()));
}

#[tokio::test]
async fn analysts_read_the_views_on_the_replica_and_nothing_else() {
    let _replica = take_replica().await;
    let (app, _ann, bob, conversation) = three_messages_on_a_replica_backed_node().await;
    crate::read_side_support::mark(&app, &bob, conversation, "read", 2).await;
    // A login of the analyst role, as docs/analytics.md sets one up (roles are cluster-wide).
    sqlx::query(
        "do $$ begin create role duet_test_analyst login in role duet_analyst; \
         exception when duplicate_object or unique_violation then null; end $$",
    )
    .execute(&app.db)
    .await
    .unwrap();
    replicated(&app, conversation, 3).await;
    let url = app.settings.database_replica_url.clone().unwrap().replace("postgres@", "duet_test_analyst@");
    let receipts = eventually("the read receipt on the replica", Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.ok()?;
            let row: (i64, i64, i64) = sqlx::query_as(
                "select messages, delivered, read from analytics.messages_per_day join analytics.receipt_latency_per_day using (day)",
            )
            .fetch_one(&mut conn)
            .await
            .ok()?;
            (row.2 == 2).then_some(row)
        }
    })
    .await;
    assert_eq!(receipts, (3, 2, 2), "messages, delivered and read today");
    let mut analyst = PgConnection::connect(&url).await.unwrap();
    let active: i64 = sqlx::query_scalar("select active_users from analytics.active_users_per_day").fetch_one(&mut analyst).await.unwrap();
    assert_eq!(active, 1);
    // Only Ann wrote: no replies, but the view is the analyst's to read.
    let replies: i64 = sqlx::query_scalar("select count(*) from analytics.reply_time_per_day").fetch_one(&mut analyst).await.unwrap();
    assert_eq!(replies, 0);
    let raw = sqlx::query("select count(*) from messages").fetch_one(&mut analyst).await.unwrap_err();
    assert!(raw.to_string().contains("permission denied"), "{raw}");
}

/// Settings for a fresh database read from the same database on each of `replicas` (admin URLs).
fn settings_with_replicas(replicas: &[String]) -> Settings {
    let mut settings = fresh_settings();
    let name = settings.database_url.rsplit('/').next().unwrap().to_owned();
    let urls: Vec<String> = replicas.iter().map(|url| with_database(url, &name)).collect();
    settings.database_replica_url = Some(urls.join(","));
    settings
}

/// `duet_query_replica_reads_total` of the replica at `url`, from the node's metrics.
fn replica_reads(metrics: &str, url: &str) -> u64 {
    let url = reqwest::Url::parse(url).unwrap();
    let series = format!("duet_query_replica_reads_total{{replica=\"{}:{}\"}} ", url.host_str().unwrap(), url.port().unwrap());
    let line = metrics.lines().find(|line| line.starts_with(&series)).unwrap_or_else(|| panic!("no {series} in {metrics}"));
    line[series.len()..].parse().unwrap()
}

#[tokio::test]
async fn reads_take_the_two_replicas_in_turn() {
    let _replica = take_replica().await;
    let replicas = [replica_admin_url(), replica2_admin_url()];
    let (app, _ann, bob, conversation) = three_messages_on(settings_with_replicas(&replicas)).await;
    let name = app.settings.database_url.rsplit('/').next().unwrap().to_owned();
    for url in &replicas {
        replicated_on(with_database(url, &name), conversation, 3).await;
    }
    let path = format!("/conversations/{conversation}/messages?minSeq=3");
    for _ in 0..4 {
        assert_eq!(page(&app, &bob.token, &path).await, (vec![1, 2, 3], "replica".to_owned()));
    }
    let (_, search) = app.get("/search?q=m2", Some(&bob.token)).await;
    assert_eq!(search["items"][0]["seq"], 2, "{search}");
    let metrics = app.metrics().await;
    let counts = replicas.map(|url| replica_reads(&metrics, &url));
    assert_eq!(counts.iter().sum::<u64>(), 5, "{metrics}");
    assert!(counts.iter().all(|&n| n >= 2), "each replica serves its share: {counts:?}");
    assert!(metrics.contains("duet_query_history_reads_total{source=\"replica\"} 5"), "{metrics}");
}

#[tokio::test]
async fn reads_go_on_when_a_replica_is_down_or_drops_its_connections() {
    let _replica = take_replica().await;
    // Nothing listens on this port (the pg helper's range): a stopped replica.
    let stopped = "postgres://postgres@127.0.0.1:42999/postgres".to_owned();
    let live = replica_admin_url();
    let (app, _ann, bob, conversation) = three_messages_on(settings_with_replicas(&[stopped.clone(), live.clone()])).await;
    let name = app.settings.database_url.rsplit('/').next().unwrap().to_owned();
    replicated_on(with_database(&live, &name), conversation, 3).await;
    let path = format!("/conversations/{conversation}/messages?minSeq=3");
    for _ in 0..4 {
        assert_eq!(page(&app, &bob.token, &path).await, (vec![1, 2, 3], "replica".to_owned()));
    }
    let metrics = app.metrics().await;
    assert_eq!(replica_reads(&metrics, &stopped), 0, "{metrics}");
    assert_eq!(replica_reads(&metrics, &live), 4, "{metrics}");

    // The live replica drops the node's connections (as when it restarts):
    // the next read is still served, by the primary if no replica is left.
    let mut admin = PgConnection::connect(&live).await.unwrap();
    let ended: Vec<bool> =
        sqlx::query_scalar("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()")
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(!ended.is_empty(), "the node held connections to the replica");
    let (seqs, _) = page(&app, &bob.token, &path).await;
    assert_eq!(seqs, vec![1, 2, 3]);
    let (_, search) = app.get("/search?q=m2", Some(&bob.token)).await;
    assert_eq!(search["items"][0]["seq"], 2, "{search}");
}
