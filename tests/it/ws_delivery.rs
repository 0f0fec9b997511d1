//! Gateway: delivery across nodes, repair of lost live events, offline sync.

use std::time::Instant;

use duet_common::protocol::{ClientKind, ServerKind};
use serde_json::json;

use crate::helpers::TestApp;
use crate::ws::{Chat, WsClient, seqs};

#[tokio::test]
async fn users_on_different_nodes_exchange_messages_and_receipts() {
    let node1 = TestApp::spawn().await;
    let node2 = node1.spawn_peer().await;
    let ann = node1.register("Ann").await;
    let bob = node1.register("Bob").await;
    let conversation = node1.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&node1, &ann).await;
    let mut b = WsClient::connect(&node2, &bob).await;

    let ack = a.send_message(conversation, "from node 1").await;
    assert_eq!(b.next_message().await["id"], ack["messageId"]);
    let reply = b.send_message(conversation, "from node 2").await;
    assert_eq!(a.next_message().await["id"], reply["messageId"]);

    b.read(conversation, 2).await;
    let read = a.next_matching(ServerKind::Read, |_| true).await;
    assert_eq!(read["seq"], 2);
}

/// A node hands its own events to its own sessions without Redis: with Redis
/// unreachable, users on that node still get messages, receipts and typing live.
#[tokio::test]
async fn users_on_one_node_get_events_live_while_redis_is_unreachable() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let isolated = app.spawn_cut_off_peer(duet::Service::ALL).await;
    let mut a = WsClient::connect(&isolated, &ann).await;
    let mut b = WsClient::connect(&isolated, &bob).await;

    let ack = a.send_message(conversation, "no Redis needed").await;
    let message = b.next_message().await;
    assert_eq!((&message["id"], &message["seq"]), (&ack["messageId"], &ack["seq"]));
    b.read(conversation, 1).await;
    let read = a.next_matching(ServerKind::Read, |_| true).await;
    assert_eq!((&read["userId"], &read["seq"]), (&serde_json::json!(bob.id), &serde_json::json!(1)));
    b.typing(conversation, "start").await;
    let typing = a.next_matching(ServerKind::Typing, |_| true).await;
    assert_eq!((&typing["userId"], &typing["state"]), (&serde_json::json!(bob.id), &serde_json::json!("start")));
}

/// Receipts have no answer, so the gateway reads on while they commit: a
/// receipt held up in PostgreSQL holds neither the sends behind it nor their
/// acks, and once it can it applies, in order with the connection's other
/// receipts.
#[tokio::test]
async fn a_receipt_waiting_on_postgres_does_not_hold_the_frames_behind_it() {
    let app = TestApp::spawn().await;
    let Chat { bob, conversation, mut a, mut b, .. } = Chat::open(&app).await;
    a.send_message(conversation, "one").await;
    a.send_message(conversation, "two").await;

    // Bob's member row is locked: his receipts wait for it.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("select 1 from conversation_members where conversation_id = $1 and user_id = $2 for update")
        .bind(conversation)
        .bind(bob.id)
        .execute(&mut *lock)
        .await
        .unwrap();
    b.delivered(conversation, 1).await;
    b.read(conversation, 2).await;
    let reply = b.send_message(conversation, "sent while my receipts wait").await;
    assert_eq!(reply["seq"], 3);
    assert_eq!(app.stored_markers(conversation, &bob).await, (0, 0), "the receipts are still waiting for the lock");

    lock.rollback().await.unwrap();
    let delivered = a.next_matching(ServerKind::Delivered, |_| true).await;
    assert_eq!((&delivered["userId"], &delivered["seq"]), (&json!(bob.id), &json!(1)));
    let read = a.next_matching(ServerKind::Read, |_| true).await;
    assert_eq!((&read["userId"], &read["seq"]), (&json!(bob.id), &json!(2)));
}

#[tokio::test]
async fn a_live_event_lost_by_pubsub_is_filled_from_postgres_in_order() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    // A node that cannot reach Redis stores sends but cannot publish them.
    let isolated = app.spawn_cut_off_peer(duet::Service::ALL).await;

    let mut b = WsClient::connect(&app, &bob).await;
    let mut a_isolated = WsClient::connect(&isolated, &ann).await;
    let lost = a_isolated.send_message(conversation, "never published").await;
    let mut a = WsClient::connect(&app, &ann).await;
    let live = a.send_message(conversation, "published").await;

    let first = b.next_message().await;
    let second = b.next_message().await;
    assert_eq!((first["seq"].as_i64(), second["seq"].as_i64()), (Some(1), Some(2)));
    assert_eq!(first["id"], lost["messageId"]);
    assert_eq!(second["id"], live["messageId"]);
}

#[tokio::test]
async fn an_offline_receiver_syncs_exactly_the_200_messages_once_in_order() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;

    // Pipelined: 200 sends in flight, then the 200 acks.
    let started = Instant::now();
    for i in 0..200 {
        a.send_message_nowait(conversation, &format!("m-{i}"), &format!("message {i}")).await;
    }
    let mut acked = Vec::new();
    while acked.len() < 200 {
        let ack = a.next_matching(ServerKind::Ack, |_| true).await;
        acked.push(ack["seq"].as_i64().unwrap());
    }
    let elapsed = started.elapsed();
    println!("200 pipelined WebSocket sends acked in {elapsed:?} ({:.0} msg/s)", 200.0 / elapsed.as_secs_f64());
    assert_eq!(acked, (1..=200).collect::<Vec<_>>(), "one client's sends keep their order");

    let mut b = WsClient::connect(&app, &bob).await;
    let result = b.sync(json!({})).await;
    assert_eq!(result["moreConversations"], false);
    let entry = &result["conversations"][0];
    assert_eq!(entry["conversationId"], conversation.to_string());
    assert_eq!(entry["unreadCount"], 200);
    assert_eq!(entry["hasMore"], true, "the default page is 100");
    let mut messages = entry["messages"].as_array().unwrap().clone();
    let last = messages.last().unwrap()["seq"].as_i64().unwrap();
    messages.extend(b.sync_conversation(conversation, last, 64).await);
    assert_eq!(seqs(&messages), (1..=200).collect::<Vec<_>>());
    let texts: Vec<_> = messages.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(texts, (0..200).map(|i| format!("message {i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn sync_reports_peer_markers_and_unread_counts_and_skips_delivered_conversations() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let with_ann = app.conversation(&ann, &bob).await;
    let with_cat = app.conversation(&cat, &bob).await;
    for i in 0..3 {
        app.send_ok(&ann, with_ann, &format!("a{i}")).await;
    }
    app.send_ok(&cat, with_cat, "c0").await;
    let mut b = WsClient::connect(&app, &bob).await;
    b.read(with_cat, 1).await;
    b.next_matching(ServerKind::Read, |r| r["userId"] == bob.id.to_string()).await;
    b.send_message(with_ann, "bob's reply").await;

    let result = b.sync(json!({})).await;
    let conversations = result["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "the conversation delivered up to its end is skipped: {result}");
    let entry = &conversations[0];
    assert_eq!(entry["conversationId"], with_ann.to_string());
    assert_eq!(seqs(entry["messages"].as_array().unwrap()), vec![1, 2, 3, 4]);
    assert_eq!(entry["unreadCount"], 3, "bob's own message is not unread");
    assert_eq!((entry["peerLastDeliveredSeq"].as_i64(), entry["peerLastReadSeq"].as_i64()), (Some(0), Some(0)));

    let listed = b.sync(json!({"conversations": [{"conversationId": with_cat, "afterSeq": 0}]})).await;
    assert_eq!(listed["conversations"][0]["unreadCount"], 0);
    assert_eq!(seqs(listed["conversations"][0]["messages"].as_array().unwrap()), vec![1]);
}

#[tokio::test]
async fn sync_of_a_foreign_conversation_or_a_bad_limit_is_refused() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let theirs = app.conversation(&ann, &bob).await;
    let mut c = WsClient::connect(&app, &cat).await;
    let id = c.send(ClientKind::Sync, json!({"conversations": [{"conversationId": theirs, "afterSeq": 0}]})).await;
    c.expect_error(Some(&id), "conversation_not_found").await;
    let id = c.send(ClientKind::Sync, json!({"limit": 0})).await;
    c.expect_error(Some(&id), "invalid_limit").await;
}

/// Runs a Redis command as the default user.
async fn redis_admin(args: &[&str]) {
    use fred::interfaces::ClientLike;
    let client = fred::prelude::Builder::from_config(fred::prelude::Config::from_url("redis://127.0.0.1:6379").unwrap()).build().unwrap();
    client.init().await.unwrap();
    let command = fred::types::CustomCommand::new(args[0].to_owned(), None, false);
    let rest: Vec<String> = args[1..].iter().map(|a| a.to_string()).collect();
    let _: fred::prelude::Value = client.custom(command, rest).await.unwrap();
    let _ = client.quit().await;
}

#[tokio::test]
async fn messages_published_while_a_nodes_subscriber_is_cut_off_arrive_once_it_reconnects() {
    let app = TestApp::spawn().await;
    // Node B reaches Redis as a user of its own, so the test can cut it off alone.
    let user = format!("duet-test-{}", uuid::Uuid::new_v4().simple());
    redis_admin(&["ACL", "SETUSER", &user, "on", ">test-password", "~*", "&*", "+@all"]).await;
    let mut settings = app.settings.clone();
    settings.redis_url = format!("redis://{user}:test-password@127.0.0.1:6379");
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    let node_b = TestApp::spawn_settings(settings, duet::Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;
    let mut b = WsClient::connect(&node_b, &bob).await;
    a.send_message(conversation, "before").await;
    assert_eq!(b.next_message().await["seq"], 1);

    // Cut node B off (it keeps trying to reconnect), send, then let it back in.
    redis_admin(&["ACL", "SETUSER", &user, "off"]).await;
    redis_admin(&["CLIENT", "KILL", "USER", &user]).await;
    let during = a.send_message(conversation, "while node B cannot hear").await;
    let after = a.send_message(conversation, "still cut off").await;
    redis_admin(&["ACL", "SETUSER", &user, "on"]).await;

    let first = b.next_message().await;
    let second = b.next_message().await;
    assert_eq!((first["id"].clone(), second["id"].clone()), (during["messageId"].clone(), after["messageId"].clone()));
    assert_eq!((first["seq"].as_i64(), second["seq"].as_i64()), (Some(2), Some(3)));
    // They came from the re-read of PostgreSQL after the reconnect, not from Pub/Sub.
    let metrics = node_b.metrics().await;
    assert!(metrics.contains("duet_ws_messages_filled_total 2"), "{metrics}");
    redis_admin(&["ACL", "DELUSER", &user]).await;
}
