//! Gateway: malformed frames, floods, frame size, rate limits, handshake
//! limits, the Origin allowlist and slow readers.

use duet_common::protocol::{ClientKind, ServerKind};
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::helpers::{TestApp, assert_error};
use crate::ws::WAIT;
use crate::ws::{WsClient, open, open_with_small_buffer};

#[tokio::test]
async fn every_malformed_frame_gets_an_error_naming_it_and_the_connection_stays_usable() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;

    a.send_raw("{not json").await;
    a.expect_error(None, "invalid_json").await;
    a.send_raw("[1, 2]").await;
    a.expect_error(None, "invalid_frame").await;
    a.send_raw(r#"{"id": "no-type", "data": {}}"#).await;
    a.expect_error(Some("no-type"), "invalid_frame").await;
    a.send_raw(r#"{"type": 7, "id": "numeric-type"}"#).await;
    a.expect_error(Some("numeric-type"), "invalid_frame").await;
    a.send_raw(&json!({"type": ClientKind::Ping.as_str(), "id": "x".repeat(65)}).to_string()).await;
    a.expect_error(None, "invalid_frame").await;

    let id = a.send_type("chat.nonsense", json!({})).await;
    a.expect_error(Some(&id), "unknown_type").await;
    let id = a.send(ClientKind::Send, json!({"conversationId": conversation, "text": "no client id"})).await;
    let missing = a.expect_error(Some(&id), "invalid_data").await;
    assert!(missing["message"].as_str().unwrap().contains("clientMsgId"), "{missing}");
    let id = a.send(ClientKind::Read, json!({"conversationId": "not-a-uuid", "seq": 1})).await;
    a.expect_error(Some(&id), "invalid_data").await;
    let id = a.send(ClientKind::Typing, json!({"conversationId": conversation, "state": "dancing"})).await;
    a.expect_error(Some(&id), "invalid_data").await;
    a.send_binary(vec![1, 2, 3]).await;
    a.expect_error(None, "binary_not_supported").await;

    // Input rules of the command side, the same as over REST.
    let id = a.send(ClientKind::Send, json!({"conversationId": conversation, "clientMsgId": "c1", "text": "x".repeat(4001)})).await;
    a.expect_error(Some(&id), "text_too_long").await;
    let id = a.send(ClientKind::Send, json!({"conversationId": conversation, "clientMsgId": "c2", "text": "   "})).await;
    a.expect_error(Some(&id), "text_empty").await;
    let id = a.send(ClientKind::Send, json!({"clientMsgId": "c3", "text": "where to?"})).await;
    a.expect_error(Some(&id), "invalid_target").await;
    let id = a.send(ClientKind::Send, json!({"conversationId": uuid::Uuid::new_v4(), "clientMsgId": "c4", "text": "?"})).await;
    a.expect_error(Some(&id), "conversation_not_found").await;
    let id = a.read(conversation, 5).await;
    a.expect_error(Some(&id), "seq_out_of_range").await;
    let id = a.send(ClientKind::Auth, json!({"token": ann.token})).await;
    a.expect_error(Some(&id), "already_authenticated").await;

    a.ping().await;
    let ack = a.send_message(conversation, "still here").await;
    assert_eq!(ack["seq"], 1);
}

#[tokio::test]
async fn a_flood_of_bad_frames_closes_the_connection_1008() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let mut a = WsClient::connect(&app, &ann).await;
    for _ in 0..30 {
        a.send_raw("garbage").await;
    }
    assert_eq!(a.expect_close().await, 1008);
}

#[tokio::test]
async fn a_frame_over_the_size_limit_closes_the_connection_1009() {
    let app = TestApp::spawn_with(|s| s.ws_max_frame_bytes = 8 * 1024).await;
    let ann = app.register("Ann").await;
    let mut a = WsClient::connect(&app, &ann).await;
    let big = json!({"type": ClientKind::Ping.as_str(), "id": "big", "data": {"pad": "x".repeat(9 * 1024)}});
    a.send_raw(&big.to_string()).await;
    assert_eq!(a.expect_close().await, 1009);
}

#[tokio::test]
async fn sends_over_the_per_user_limit_are_refused_with_retry_after_on_websocket_and_rest() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_per_sec = 1;
        s.rate_limit_burst = 2;
    })
    .await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;
    a.send_message(conversation, "one").await;
    a.send_message(conversation, "two").await;
    let id = a.send_message_nowait(conversation, "three", "three").await;
    let refused = a.expect_error(Some(&id), "rate_limited").await;
    assert!(refused["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0 && ms <= 1000), "{refused}");
    // The same budget applies to REST.
    let rest = app.send(&ann, conversation, "four", "four").await;
    assert_error(&rest, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 2, "refused messages are not stored");
}

#[tokio::test]
async fn handshakes_over_the_per_ip_limit_are_refused_429() {
    let app = TestApp::spawn_with(|s| s.handshake_per_min = 3).await;
    let ann = app.register("Ann").await;
    for _ in 0..3 {
        WsClient::connect(&app, &ann).await;
    }
    match open(app.addr, &[("authorization", &format!("Bearer {}", ann.token))]).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().get("retry-after").is_some());
        }
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| "an open socket")),
    }
}

#[tokio::test]
async fn origins_outside_the_allowlist_are_refused_and_clients_without_origin_are_fine() {
    let app = TestApp::spawn_with(|s| s.allowed_origins = vec!["https://app.duet.example".into()]).await;
    let ann = app.register("Ann").await;
    let bearer = format!("Bearer {}", ann.token);
    match open(app.addr, &[("authorization", &bearer), ("origin", "https://evil.example")]).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body: serde_json::Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "origin_not_allowed");
        }
        other => panic!("expected HTTP 403, got {:?}", other.map(|_| "an open socket")),
    }
    let allowed = open(app.addr, &[("authorization", &bearer), ("origin", "https://app.duet.example")]).await.unwrap();
    WsClient::from_stream(allowed).expect(ServerKind::AuthOk).await;
    WsClient::connect(&app, &ann).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_1013_and_its_messages_stay_for_sync() {
    // Room for busy senders; Bob's queue fills anyway once his socket is full.
    let app = TestApp::spawn_with(|s| s.ws_outbound_queue = 64).await;
    let bob = app.register("Bob").await;
    let mut slow = WsClient::from_stream(open_with_small_buffer(app.addr, &bob.token).await);
    slow.expect(ServerKind::AuthOk).await;

    // Bob reads nothing while eight friends send him far more than his socket
    // and queue hold: 8 × 200 messages of about 4 KB, some 6.5 MB in all.
    let (senders, per_sender) = (8, 200);
    let mut conversations = Vec::new();
    let mut sending = Vec::new();
    for s in 0..senders {
        let friend = app.register(&format!("Friend{s}")).await;
        let conversation = app.conversation(&friend, &bob).await;
        conversations.push(conversation);
        let mut client = WsClient::connect(&app, &friend).await;
        sending.push(tokio::spawn(async move {
            let blob = "x".repeat(4_000);
            // In rounds, so each sender keeps reading its own acks.
            for round in 0..per_sender / 25 {
                for i in 0..25 {
                    let data = json!({"conversationId": conversation, "clientMsgId": format!("m{round}-{i}"), "type": "location", "payload": {"blob": blob}});
                    client.send(ClientKind::Send, data).await;
                }
                for _ in 0..25 {
                    client.next_matching(ServerKind::Ack, |_| true).await;
                }
            }
        }));
    }
    await_metric(&app, "duet_ws_closes_total{code=\"1013\"}", 1).await;
    // Reading again, Bob finds what was written before the close, then the close.
    assert_eq!(slow.expect_close().await, 1013);
    for sender in sending {
        sender.await.unwrap();
    }

    let mut b = WsClient::connect(&app, &bob).await;
    let result = b.sync(json!({})).await;
    let mut unread: Vec<(String, i64)> = result["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["conversationId"].as_str().unwrap().to_owned(), c["unreadCount"].as_i64().unwrap()))
        .collect();
    unread.sort();
    let mut expected: Vec<(String, i64)> = conversations.iter().map(|c| (c.to_string(), per_sender)).collect();
    expected.sort();
    assert_eq!(unread, expected, "every message waits for Bob's sync");
}

/// Waits until the node's metric `series` reaches `at_least`.
async fn await_metric(app: &TestApp, series: &str, at_least: u64) {
    // Generous: the series may need many sends to move.
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let text = app.metrics().await;
        let value = text.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse::<f64>().ok());
        if value.is_some_and(|v| v >= at_least as f64) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{series} did not reach {at_least}:\n{text}");
        // A short poll interval: the metric is the only outside sign of the close.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Nodes lease tokens from the shared bucket in small blocks: together they
/// never admit more than the bucket issued (its burst plus the refill over
/// the time taken), and the leases one node strands cost the other at most
/// `lease - 1` tokens each.
#[tokio::test]
async fn nodes_leasing_from_one_bucket_never_admit_more_than_it_issues() {
    use duet_common::ratelimit::{Decision, RateLimiter};
    let pool = duet_common::redis::connect("redis://127.0.0.1:6379", None, 1).await.unwrap();
    let redis = duet_common::redis::FastRedis::new(pool, &crate::helpers::fresh_settings(), &duet_common::metrics::Metrics::new());
    let key = format!("duet:test:{}:rl:lease", uuid::Uuid::new_v4().simple());
    let (rate, burst) = (40u32, 30u32);
    let lease = (rate / 10) as u64;
    let nodes = [RateLimiter::new(rate, burst), RateLimiter::new(rate, burst)];
    let started = std::time::Instant::now();
    let mut admitted = 0u64;
    let mut refused = 0;
    for i in 0..200 {
        match nodes[i % 2].check(&redis, &key).await {
            Decision::Allowed => admitted += 1,
            Decision::Limited { retry_after_ms } => {
                assert!(retry_after_ms > 0);
                refused += 1;
            }
            Decision::AllowedLocally => panic!("Redis is up"),
        }
    }
    let refill = (started.elapsed().as_secs_f64() * rate as f64).ceil() as u64;
    assert!(refused > 0, "200 checks must exhaust a burst of {burst}");
    assert!(admitted <= burst as u64 + refill, "admitted {admitted} > burst {burst} + refill {refill}");
    assert!(admitted >= burst as u64 - 2 * (lease - 1), "admitted {admitted}: leases stranded more than {} tokens", 2 * (lease - 1));
}
