//! Measurements, not checks: run on demand and copy the numbers into docs/push.md.
//!
//! `cargo nextest run -E 'test(/jobs::measure::/)' --run-ignored only --no-capture`

use duet_common::ids::{ConversationId, SessionId, UserId};
use std::time::{Duration, Instant};

use duet::Service;

use super::{PushTest, apns_token};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Creates `n` users directly (no password hashing), each with an APNs device.
async fn users_with_devices(t: &PushTest, n: usize) -> Vec<(UserId, String)> {
    let users: Vec<(UserId, String)> = (0..n).map(|_| (UserId::new(), apns_token())).collect();
    let ids: Vec<UserId> = users.iter().map(|u| u.0).collect();
    let tokens: Vec<String> = users.iter().map(|u| u.1.clone()).collect();
    sqlx::query(
        "insert into users (id, email, name, password_hash) select id, id::text || '@example.com', 'm', 'x' from unnest($1::uuid[]) id",
    )
    .bind(&ids)
    .execute(&t.app.db)
    .await
    .unwrap();
    sqlx::query("insert into device_tokens (id, user_id, platform, token) select gen_random_uuid(), u, 'ios', tk from unnest($1::uuid[], $2::text[]) as x(u, tk)")
        .bind(&ids)
        .bind(&tokens)
        .execute(&t.app.db)
        .await
        .unwrap();
    users
}

#[tokio::test]
#[ignore = "measurement"]
async fn measure_send_overhead_and_enqueue_to_push_latency() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let n = 200;
    let receivers = users_with_devices(&t, n).await;
    let mut conversations = Vec::new();
    for (id, _) in &receivers {
        let (_, body) = t.app.post("/conversations", Some(&ann.token), serde_json::json!({"peerId": id})).await;
        conversations.push(body["id"].as_str().unwrap().parse::<ConversationId>().unwrap());
    }
    // Offline receivers: each send enqueues a push.
    let mut send_offline = Vec::new();
    let mut latency = Vec::new();
    for (i, (_, token)) in receivers.iter().enumerate() {
        let start = Instant::now();
        t.app.send_ok(&ann, conversations[i], "hi").await;
        send_offline.push(start.elapsed());
        t.fake.wait_requests(token, 1).await;
        latency.push(t.fake.requests(token)[0].at - start);
    }
    // The same receivers online: each send only checks presence.
    for (id, _) in &receivers {
        duet_common::presence::touch(&t.fast, &t.keys, *id, SessionId::new(), "m", 60_000).await;
    }
    let mut send_online = Vec::new();
    for conversation in &conversations {
        let start = Instant::now();
        t.app.send_ok(&ann, *conversation, "hi").await;
        send_online.push(start.elapsed());
    }
    for (name, mut v) in [
        ("send, receiver offline (enqueues)", send_offline),
        ("send, receiver online", send_online),
        ("send start -> push at APNs", latency),
    ] {
        v.sort();
        println!("{name}: n={} p50={:?} p95={:?} max={:?}", v.len(), percentile(&v, 0.5), percentile(&v, 0.95), v[v.len() - 1]);
    }
}

#[tokio::test]
#[ignore = "measurement"]
async fn measure_last_seen_batch_writer_throughput() {
    let t = PushTest::spawn_services(&[Service::CommandApi, Service::QueryApi, Service::Projector]).await;
    let n = 20_000;
    let ids: Vec<UserId> = users_with_devices(&t, n).await.into_iter().map(|u| u.0).collect();
    let now = chrono::Utc::now().timestamp_millis() as f64;
    let members: Vec<(f64, UserId)> = ids.iter().map(|id| (now, *id)).collect();
    t.pend_last_seen(&members).await;
    let start = Instant::now();
    let _worker = t.spawn_worker().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let written: i64 =
            sqlx::query_scalar("select count(*) from users where last_seen_at is not null").fetch_one(&t.app.db).await.unwrap();
        if written as usize == n {
            break;
        }
        assert!(Instant::now() < deadline, "only {written} written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    let jobs = t.jobs(duet_jobs::queue::LASTSEEN_QUEUE).await.len();
    println!("lastSeen: {n} users in {jobs} jobs, {took:?} from worker start ({:.0} users/s)", n as f64 / took.as_secs_f64());
}
