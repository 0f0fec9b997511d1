//! Gateway: presence (clean close, lapsed TTL, snapshot, Redis down) and typing.

use duet_common::ids::UserId;
use std::time::Duration;

use duet_common::protocol::{ClientKind, ServerKind};
use serde_json::json;

use crate::helpers::TestApp;
use crate::ws::{Chat, WsClient, open};

/// Waits until the jobs have written `user`'s last-seen time to PostgreSQL.
async fn stored_last_seen(app: &TestApp, user: UserId) -> chrono::DateTime<chrono::Utc> {
    let deadline = tokio::time::Instant::now() + crate::ws::WAIT;
    loop {
        let stored: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select last_seen_at from users where id = $1").bind(user).fetch_one(&app.db).await.unwrap();
        if let Some(at) = stored {
            return at;
        }
        assert!(tokio::time::Instant::now() < deadline, "last seen never reached PostgreSQL");
        // Polled: the jobs move pending entries on their own schedule.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn peers_see_a_user_come_online_and_go_offline_on_clean_close() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    // Presence is shown to contacts by default (tests/it/privacy.rs); here to everyone.
    app.set_presence_visibility(&ann, "everyone").await;
    app.conversation(&ann, &bob).await;
    let mut b = WsClient::connect(&app, &bob).await;

    let a = WsClient::connect(&app, &ann).await;
    let online = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(online["status"], "online");

    // A second device changes nothing; closing it leaves Ann online.
    let a2 = WsClient::connect(&app, &ann).await;
    a2.close().await;
    let id = b.presence_subscribe(&[ann.id]).await;
    let still = b.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
    assert_eq!(still["status"], "online", "one of Ann's sessions is still open");
    a.close().await;
    let offline = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(offline["status"], "offline", "the first update after online is the offline one: {offline}");
    let last_seen: chrono::DateTime<chrono::Utc> = offline["lastSeenAt"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now() - last_seen).num_seconds().abs() < 30);
    let stored = stored_last_seen(&app, ann.id).await;
    assert_eq!(stored.timestamp_millis(), last_seen.timestamp_millis(), "the jobs store the time peers were told");
}

#[tokio::test]
async fn a_crashed_connection_goes_offline_after_the_presence_ttl() {
    let app = TestApp::spawn_with(|s| s.presence_ttl_secs = 2).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    // Presence is shown to contacts by default (tests/it/privacy.rs); here to everyone.
    app.set_presence_visibility(&ann, "everyone").await;
    app.conversation(&ann, &bob).await;
    let mut b = WsClient::connect(&app, &bob).await;
    b.keep_alive(Duration::from_millis(500));

    // Ann's client freezes: the socket stays open, nothing more is sent.
    let frozen = open(app.addr, &[("authorization", &format!("Bearer {}", ann.token))]).await.unwrap();
    let online = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(online["status"], "online");
    let offline = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["lastSeenAt"].as_str().is_some());
    drop(frozen);
}

#[tokio::test]
async fn presence_subscribe_answers_for_peers_only() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let stranger = app.register("Stranger").await;
    // Presence is shown to contacts by default (tests/it/privacy.rs); here to everyone.
    app.set_presence_visibility(&bob, "everyone").await;
    app.set_presence_visibility(&cat, "everyone").await;
    app.conversation(&ann, &bob).await;
    app.conversation(&ann, &cat).await;
    let _b = WsClient::connect(&app, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;

    let id = a.presence_subscribe(&[bob.id, cat.id]).await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let update = a.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
        statuses.push((update["userId"].as_str().unwrap().to_owned(), update["status"].as_str().unwrap().to_owned()));
    }
    statuses.sort();
    let mut expected = vec![(bob.id.to_string(), "online".to_owned()), (cat.id.to_string(), "offline".to_owned())];
    expected.sort();
    assert_eq!(statuses, expected);

    // Bob's live presence may come in between: look for the answers.
    let id = a.presence_subscribe(&[stranger.id]).await;
    let refused = a.next_matching(ServerKind::Error, |e| e["ref"] == id.as_str()).await;
    assert_eq!(refused["code"], "not_a_peer");
    let id = a.send(ClientKind::PresenceSubscribe, json!({"userIds": []})).await;
    let refused = a.next_matching(ServerKind::Error, |e| e["ref"] == id.as_str()).await;
    assert_eq!(refused["code"], "invalid_user_ids");
}

#[tokio::test]
async fn with_redis_unreachable_presence_is_unknown_and_sends_still_work() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let cut_off = app.spawn_cut_off_peer(duet::Service::ALL).await;

    let mut a = WsClient::connect(&cut_off, &ann).await;
    let ack = a.send_message(conversation, "stored anyway").await;
    assert_eq!(ack["seq"], 1);
    let id = a.presence_subscribe(&[bob.id]).await;
    let update = a.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
    assert_eq!(update["status"], "unknown");

    let mut b = WsClient::connect(&app, &bob).await;
    let synced = b.sync_conversation(conversation, 0, 10).await;
    assert_eq!(synced[0]["id"], ack["messageId"]);
}

#[tokio::test]
async fn typing_is_forwarded_stopped_and_expires_without_refresh() {
    let app = TestApp::spawn_with(|s| s.typing_ttl_secs = 1).await;
    let Chat { ann, conversation, mut a, mut b, .. } = Chat::open(&app).await;
    let is_typing = |state: &'static str| move |t: &serde_json::Value| t["state"] == state;

    a.typing(conversation, "start").await;
    let start = b.next_matching(ServerKind::Typing, is_typing("start")).await;
    assert_eq!(
        (start["userId"].as_str(), start["conversationId"].as_str()),
        (Some(ann.id.to_string().as_str()), Some(conversation.to_string().as_str()))
    );
    a.typing(conversation, "stop").await;
    b.next_matching(ServerKind::Typing, is_typing("stop")).await;

    // A start that is never refreshed ends by itself.
    a.typing(conversation, "start").await;
    b.next_matching(ServerKind::Typing, is_typing("start")).await;
    let expired = b.next_matching(ServerKind::Typing, |_| true).await;
    assert_eq!(expired["state"], "stop");
    assert_eq!(expired["userId"], ann.id.to_string());

    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 0, "typing is never stored");
    let stranger = app.register("Stranger").await;
    let mut s = WsClient::connect(&app, &stranger).await;
    let id = s.typing(conversation, "start").await;
    s.expect_error(Some(&id), "conversation_not_found").await;
}

#[tokio::test]
async fn a_connection_dropped_without_a_close_frame_goes_offline_without_waiting_for_the_ttl() {
    let app = TestApp::spawn().await; // presence TTL 60 s: only the dropped socket can explain offline
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    // Presence is shown to contacts by default (tests/it/privacy.rs); here to everyone.
    app.set_presence_visibility(&ann, "everyone").await;
    app.conversation(&ann, &bob).await;
    let mut b = WsClient::connect(&app, &bob).await;
    let a = WsClient::connect(&app, &ann).await;
    b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string() && u["status"] == "online").await;
    drop(a); // the TCP connection closes with no WebSocket close frame
    let offline = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(offline["status"], "offline");
}
