//! Blocking (a blocked user cannot message, open a conversation or see
//! presence, and is not told why) and reports.

use duet_common::protocol::{ClientKind, ServerKind};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error};
use crate::ws::WsClient;

#[tokio::test]
async fn a_blocked_user_cannot_message_or_open_a_conversation_and_is_not_told_why_until_unblocked() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&bob, &ann).await;
    let (status, before) = app.send(&bob, conversation, "before", "sent before the block").await;
    assert_eq!(status, StatusCode::CREATED, "{before}");

    app.block(&ann, &bob).await;
    app.block(&ann, &bob).await; // twice is one block
    let (status, blocks) = app.get("/blocks", Some(&ann.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(blocks["users"].as_array().unwrap().len(), 1, "{blocks}");
    assert_eq!(blocks["users"][0]["id"], bob.id.to_string());
    assert_eq!(blocks["users"][0]["name"], "Bob");

    // REST: refused with a code and text that name no reason.
    let refused = app.send(&bob, conversation, "after", "hello?").await;
    assert_error(&refused, StatusCode::FORBIDDEN, "recipient_unavailable");
    assert!(!refused.1.to_string().to_lowercase().contains("block"), "{}", refused.1);
    let reopen = app.post("/conversations", Some(&bob.token), json!({"peerId": ann.id})).await;
    assert_error(&reopen, StatusCode::FORBIDDEN, "recipient_unavailable");
    // A retry of what was stored before the block still gets its answer.
    let (status, retried) = app.send(&bob, conversation, "before", "sent before the block").await;
    assert_eq!((status, &retried["id"]), (StatusCode::OK, &before["id"]));

    // WebSocket: by conversation and by receiver.
    let mut b = WsClient::connect(&app, &bob).await;
    let id = b.send(ClientKind::Send, json!({"conversationId": conversation, "clientMsgId": "ws1", "text": "hello?"})).await;
    let error = b.next_matching(ServerKind::Error, |e| e["ref"] == id.as_str()).await;
    assert_eq!(error["code"], "recipient_unavailable");
    let id = b.send(ClientKind::Send, json!({"receiverId": ann.id, "clientMsgId": "ws2", "text": "hello?"})).await;
    let error = b.next_matching(ServerKind::Error, |e| e["ref"] == id.as_str()).await;
    assert_eq!(error["code"], "recipient_unavailable");

    // The blocker is told plainly.
    assert_error(&app.send(&ann, conversation, "a1", "hi").await, StatusCode::FORBIDDEN, "user_blocked");

    let stored: i64 =
        sqlx::query_scalar("select count(*) from messages where conversation_id = $1").bind(conversation).fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 1, "only the message from before the block");

    app.unblock(&ann, &bob).await;
    app.unblock(&ann, &bob).await; // lifting twice is not an error
    let (_, blocks) = app.get("/blocks", Some(&ann.token)).await;
    assert_eq!(blocks, json!({"users": []}));
    app.send_ok(&bob, conversation, "hello again").await;
    let ack = b.send_message(conversation, "and live").await;
    assert_eq!(ack["seq"], 3);
    app.send_ok(&ann, conversation, "hi").await;
}

#[tokio::test]
async fn a_block_hides_presence_both_ways_and_peers_are_told_at_once() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    app.set_presence_visibility(&ann, "everyone").await;
    app.set_presence_visibility(&bob, "everyone").await;
    app.conversation(&ann, &bob).await;
    sqlx::query("update users set last_seen_at = now() where id = any($1)").bind(vec![ann.id, bob.id]).execute(&app.db).await.unwrap();
    let mut b = WsClient::connect(&app, &bob).await;
    let _a = WsClient::connect(&app, &ann).await;
    let online = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(online["status"], "online");

    app.block(&ann, &bob).await;
    let told = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(told["status"], "unknown");
    let id = b.presence_subscribe(&[ann.id]).await;
    let answer = b.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
    assert_eq!(answer["status"], "unknown");
    for (viewer, target) in [(&bob, &ann), (&ann, &bob)] {
        let (_, profile) = app.get(&format!("/users/{}", target.id), Some(&viewer.token)).await;
        assert!(profile.get("lastSeenAt").is_none(), "{profile}");
    }

    app.unblock(&ann, &bob).await;
    let told = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(told["status"], "online");
    let (_, profile) = app.get(&format!("/users/{}", ann.id), Some(&bob.token)).await;
    assert!(profile.get("lastSeenAt").is_some(), "{profile}");
}

#[tokio::test]
async fn blocking_refuses_oneself_and_unknown_users() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let own = app.post(&format!("/users/{}/block", ann.id), Some(&ann.token), json!({})).await;
    assert_error(&own, StatusCode::BAD_REQUEST, "cannot_block_self");
    let nobody = Uuid::new_v4();
    assert_error(&app.post(&format!("/users/{nobody}/block"), Some(&ann.token), json!({})).await, StatusCode::NOT_FOUND, "user_not_found");
    assert_error(
        &app.post(&format!("/users/{nobody}/unblock"), Some(&ann.token), json!({})).await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );
    assert_error(&app.post("/users/not-a-uuid/block", Some(&ann.token), json!({})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.post(&format!("/users/{}/block", ann.id), None, json!({})).await, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn reports_of_users_and_messages_are_stored_for_moderation_and_limited_per_user() {
    let app = TestApp::spawn_with(|s| {
        s.report_rate_per_sec = 1;
        s.report_burst = 2;
    })
    .await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let message = app.send_ok(&bob, conversation, "buy my stuff").await;

    let started = std::time::Instant::now();
    let (status, by_user) = app.post("/reports", Some(&ann.token), json!({"userId": bob.id, "reason": "harassment"})).await;
    assert_eq!(status, StatusCode::CREATED, "{by_user}");
    assert_eq!(by_user["reportedUserId"], bob.id.to_string());
    let (status, by_message) = app
        .post("/reports", Some(&ann.token), json!({"messageId": message["id"], "reason": "spam", "details": "  the third one today\n "}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_message}");
    assert_eq!(by_message["reportedUserId"], bob.id.to_string(), "a message's sender is reported");

    let stored: Vec<(uuid::Uuid, Option<uuid::Uuid>, String, Option<String>)> =
        sqlx::query_as("select reported_user_id, message_id, reason, details from reports where reporter_id = $1 order by created_at")
            .bind(ann.id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let message_id: uuid::Uuid = message["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        stored,
        vec![
            (bob.id.into(), None, "harassment".to_owned(), None),
            (bob.id.into(), Some(message_id), "spam".to_owned(), Some("the third one today".to_owned())),
        ]
    );

    // Over the limit: 429 with Retry-After. (Each second that passed may add one token.)
    let mut allowed = 2;
    let limited = loop {
        let resp = app
            .http_raw()
            .post(app.url("/reports"))
            .bearer_auth(&ann.token)
            .json(&json!({"userId": bob.id, "reason": "spam"}))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            break resp;
        }
        assert_eq!(resp.status(), StatusCode::CREATED);
        allowed += 1;
        assert!(allowed <= 2 + started.elapsed().as_secs() as usize + 1, "{allowed} reports in {:?}", started.elapsed());
    };
    assert!(limited.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // Bob's budget is his own.
    let (status, _) = app.post("/reports", Some(&bob.token), json!({"userId": ann.id, "reason": "other"})).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_reports_are_refused_with_a_code() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let theirs = app.conversation(&bob, &cat).await;
    let not_mine = app.send_ok(&bob, theirs, "private").await;
    let ours = app.conversation(&ann, &bob).await;
    let own = app.send_ok(&ann, ours, "mine").await;

    let report = |body: serde_json::Value| app.post("/reports", Some(&ann.token), body);
    assert_error(&report(json!({"reason": "spam"})).await, StatusCode::BAD_REQUEST, "invalid_report_target");
    assert_error(
        &report(json!({"userId": bob.id, "messageId": not_mine["id"], "reason": "spam"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_report_target",
    );
    assert_error(&report(json!({"userId": bob.id, "reason": "boring"})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&report(json!({"userId": bob.id})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(
        &report(json!({"userId": bob.id, "reason": "spam", "details": "a\u{0}b"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_details",
    );
    assert_error(
        &report(json!({"userId": bob.id, "reason": "spam", "details": "x".repeat(1001)})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(&report(json!({"messageId": not_mine["id"], "reason": "spam"})).await, StatusCode::NOT_FOUND, "message_not_found");
    assert_error(&report(json!({"messageId": own["id"], "reason": "spam"})).await, StatusCode::BAD_REQUEST, "invalid_report_target");
    assert_error(&report(json!({"userId": ann.id, "reason": "spam"})).await, StatusCode::BAD_REQUEST, "invalid_report_target");
    assert_error(&report(json!({"userId": Uuid::new_v4(), "reason": "spam"})).await, StatusCode::NOT_FOUND, "user_not_found");
    let stored: i64 = sqlx::query_scalar("select count(*) from reports").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 0);
}
