//! Projector throughput and lag, measured, never asserted (numbers go in
//! docs/benchmarks.md). Run:
//!
//! ```sh
//! cargo nextest run --run-ignored only -E 'test(projector_throughput)' --no-capture
//! ```

use duet_common::ids::MessageId;
use std::time::{Duration, Instant};

use duet::Service;
use duet_common::domain::{Message, MessageType};
use duet_common::events::{DomainEvent, Envelope};
use duet_common::read_model::{self as read};
use duet_projector::{Projector, ProjectorConfig, rebuild};

use crate::helpers::{TestApp, fresh_settings};
use crate::read_side_support::{caught_up, context_of};

const CONVERSATIONS: usize = 100;
const MESSAGES: usize = 20_000;
const LIVE_SENDS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on purpose, see the module docs"]
async fn projector_throughput() {
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi, Service::QueryApi]).await;
    let mut pairs = Vec::new();
    for i in 0..CONVERSATIONS {
        let a = app.register(&format!("A{i}")).await;
        let b = app.register(&format!("B{i}")).await;
        let conversation = app.conversation(&a, &b).await;
        pairs.push((conversation, a, b));
    }
    // A backlog: messages and their outbox events written straight to the database.
    let mut messages = Vec::with_capacity(MESSAGES);
    for n in 0..MESSAGES {
        let (conversation, a, b) = &pairs[n % CONVERSATIONS];
        let seq = (n / CONVERSATIONS) as i64 + 1;
        let (sender, receiver) = if seq % 2 == 0 { (a.id, b.id) } else { (b.id, a.id) };
        messages.push(Message {
            id: MessageId::new(),
            conversation_id: *conversation,
            seq,
            sender_id: sender,
            receiver_id: receiver,
            kind: MessageType::Text,
            text: Some(format!("backlog {n}")),
            payload: None,
            client_msg_id: format!("bench-{n}"),
            created_at: duet_command_api::appender::now_micros(),
            reply_to: None,
            edited_at: None,
            edit_count: 0,
            deleted_at: None,
            reactions: None,
            change_seq: None,
            hidden_at: None,
        });
    }
    for chunk in messages.chunks(2000) {
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query(
            "insert into messages (id, conversation_id, seq, sender_id, receiver_id, text, client_msg_id, created_at) \
             select * from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::timestamptz[])",
        )
        .bind(chunk.iter().map(|m| m.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.conversation_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.sender_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.receiver_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.text.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.client_msg_id.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .unwrap();
        let payloads: Vec<serde_json::Value> = chunk
            .iter()
            .map(|m| serde_json::to_value(Envelope::from(DomainEvent::MessageAppended { message: m.clone() })).unwrap())
            .collect();
        sqlx::query("insert into outbox (event_type, conversation_id, payload) select 'message_appended', (p->'message'->>'conversationId')::uuid, p from unnest($1::jsonb[]) p")
            .bind(&payloads)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    sqlx::query("update conversations c set last_seq = (select max(seq) from messages m where m.conversation_id = c.id)")
        .execute(&app.db)
        .await
        .unwrap();
    let backlog: i64 = sqlx::query_scalar("select count(*) from outbox").fetch_one(&app.db).await.unwrap();

    // Catch-up: one projector, then two sharing the work. Redis's own CPU
    // time per event does not count what the hypervisor steals.
    let ctx = context_of(&app.settings).await;
    let redis_before = redis_cpu_secs(&ctx).await;
    let started = Instant::now();
    let projector = Projector::start(&ctx, ProjectorConfig::new("bench-1")).await.unwrap();
    caught_up(&ctx).await;
    let one = started.elapsed();
    let redis_used = redis_cpu_secs(&ctx).await - redis_before;
    projector.stop().await;
    println!(
        "catch-up, 1 projector: {backlog} events in {:.2} s = {:.0} events/s; Redis CPU {:.1} µs per event",
        one.as_secs_f64(),
        backlog as f64 / one.as_secs_f64(),
        redis_used * 1e6 / backlog as f64
    );

    let started = Instant::now();
    let rebuilt = rebuild::rebuild(&ctx).await.unwrap().expect("no other rebuild runs");
    println!("rebuild: {} entries in {:.0} ms", rebuilt.entries, started.elapsed().as_secs_f64() * 1e3);

    let republished = duet_projector::relay::rewind(&app.db).await.unwrap();
    let started = Instant::now();
    let p1 = Projector::start(&ctx, ProjectorConfig::new("bench-a")).await.unwrap();
    let p2 = Projector::start(&context_of(&app.settings).await, ProjectorConfig::new("bench-b")).await.unwrap();
    caught_up(&ctx).await;
    let two = started.elapsed();
    println!(
        "catch-up, 2 projectors (replay of the same events): {republished} events in {:.2} s = {:.0} events/s",
        two.as_secs_f64(),
        republished as f64 / two.as_secs_f64()
    );

    p1.stop().await;
    p2.stop().await;

    // Live: send through a node running every service (its relay is woken by
    // its own commits, as in production), time until the receiver's list
    // shows the message, looking every millisecond.
    let node = app.spawn_peer().await;
    let mut lags = Vec::with_capacity(LIVE_SENDS);
    for n in 0..LIVE_SENDS {
        let (conversation, a, b) = &pairs[n % CONVERSATIONS];
        let sent = node.send_ok(a, *conversation, &format!("live {n}")).await;
        let acked = Instant::now();
        let seq = sent["seq"].as_i64().unwrap();
        let deadline = acked + Duration::from_secs(10);
        while read::entry(&ctx, b.id, *conversation).await.ok().flatten().is_none_or(|entry| entry.last_seq < seq) {
            assert!(Instant::now() < deadline, "send {n} was not projected within 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(acked.elapsed());
    }
    lags.sort();
    let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "live, 1 node: send ack -> receiver's list updated over {LIVE_SENDS} sends: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
}

/// CPU seconds Redis has used since it started (`INFO cpu`: user + system).
async fn redis_cpu_secs(ctx: &duet_common::AppContext) -> f64 {
    use fred::interfaces::ClientLike;
    let command = fred::types::CustomCommand::new_static("INFO", None, false);
    let info: String = ctx.redis.next().custom(command, vec!["cpu"]).await.unwrap();
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| *name == "used_cpu_user" || *name == "used_cpu_sys")
        .map(|(_, value)| value.trim().parse::<f64>().unwrap())
        .sum()
}
