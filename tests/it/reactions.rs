//! Reactions (set, change, remove; counts in history and sync; live) and
//! delete for me, over REST and the WebSocket, with their refusals.

use duet_common::protocol::ServerKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};
use crate::read_side_support::{caught_up, context_of, list};
use crate::ws::{Chat, WsClient};

#[tokio::test]
async fn reactions_are_set_changed_and_removed_live_and_counted_in_history_and_sync() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut a, mut b } = Chat::open(&app).await;
    let message = app.send_ok(&ann, conversation, "react to me").await;
    let id = message["id"].clone();

    let (status, liked) = app.react(&bob, conversation, &message, Some("👍")).await;
    assert_eq!(status, StatusCode::OK, "{liked}");
    assert_eq!(liked["reactions"], json!([{"emoji": "👍", "count": 1, "userIds": [bob.id]}]));
    let update = a.next_update(&id, 1).await;
    assert_eq!((&update["change"], &update["message"]), (&json!("reaction"), &liked));

    // Ann reacts over the WebSocket; Bob changes his to the same emoji.
    let frame = a.react(conversation, &id, Some("❤️")).await;
    let answer = a.update_answering(&frame).await;
    assert_eq!(answer["message"]["reactions"].as_array().map(Vec::len), Some(2), "{answer}");
    assert_eq!(b.next_update(&id, 2).await["message"], answer["message"]);
    let (_, changed) = app.react(&bob, conversation, &message, Some("❤️")).await;
    assert_eq!(changed["reactions"], json!([{"emoji": "❤️", "count": 2, "userIds": [ann.id, bob.id]}]));
    // The same reaction again changes nothing.
    assert_eq!(app.react(&bob, conversation, &message, Some("❤️")).await, (StatusCode::OK, changed.clone()));

    let history = app.history(&ann, conversation).await;
    assert_eq!(history[0], changed);
    let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 1, "afterChange": 1}]});
    let synced = b.sync(cursor).await["conversations"][0].clone();
    assert_eq!(synced["changes"], json!([changed]), "{synced}");

    // Removed: over REST, then over the WebSocket; none left is no `reactions` at all.
    let (_, removed) = app.react(&bob, conversation, &message, None).await;
    assert_eq!(removed["reactions"], json!([{"emoji": "❤️", "count": 1, "userIds": [ann.id]}]));
    let frame = a.react(conversation, &id, None).await;
    let answer = a.update_answering(&frame).await;
    assert!(answer["message"].get("reactions").is_none(), "{answer}");
}

#[tokio::test]
async fn bad_reactions_are_refused_with_their_codes() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_per_sec = 1;
        s.rate_limit_burst = 2;
    })
    .await;
    let Chat { ann, bob, conversation, mut b, .. } = Chat::open(&app).await;
    let cat = app.register("Cat").await;
    let message = app.send_ok(&ann, conversation, "hi").await;
    let id = message["id"].clone();

    assert_error(&app.react(&cat, conversation, &message, Some("👍")).await, StatusCode::NOT_FOUND, "conversation_not_found");
    assert_error(&app.react(&bob, conversation, &message, Some("👍👍")).await, StatusCode::BAD_REQUEST, "invalid_emoji");
    let frame = b.react(conversation, &id, Some("nope")).await;
    b.error_answering(&frame, "invalid_emoji").await;
    // Refused input takes no token; two reactions take Bob's burst of the message limit.
    assert_eq!(app.react(&bob, conversation, &message, Some("👍")).await.0, StatusCode::OK);
    assert_eq!(app.react(&bob, conversation, &message, Some("❤️")).await.0, StatusCode::OK);
    assert_error(&app.react(&bob, conversation, &message, Some("🎉")).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let frame = b.react(conversation, &id, Some("🎉")).await;
    let error = b.error_answering(&frame, "rate_limited").await;
    assert!(error["retryAfterMs"].as_u64().is_some(), "{error}");
}

#[tokio::test]
async fn a_block_refuses_reactions_and_edits_but_not_an_unsend_and_a_tombstone_takes_no_reaction() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, .. } = Chat::open(&app).await;
    let from_ann = app.send_ok(&ann, conversation, "before the block").await;
    let from_bob = app.send_ok(&bob, conversation, "mine").await;
    app.block(&ann, &bob).await;
    assert_error(&app.react(&bob, conversation, &from_ann, Some("👍")).await, StatusCode::FORBIDDEN, "recipient_unavailable");
    assert_error(&app.react(&ann, conversation, &from_bob, Some("👍")).await, StatusCode::FORBIDDEN, "user_blocked");
    assert_error(&app.edit(&bob, conversation, &from_bob, "e-1", "x").await, StatusCode::FORBIDDEN, "recipient_unavailable");
    assert_eq!(app.unsend(&bob, conversation, &from_bob).await.0, StatusCode::OK);
    app.unblock(&ann, &bob).await;
    assert_error(&app.react(&ann, conversation, &from_bob, Some("👍")).await, StatusCode::CONFLICT, "message_deleted");
}

#[tokio::test]
async fn delete_for_me_hides_a_message_from_my_history_sync_and_unread_only() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut a, mut b } = Chat::open(&app).await;
    let cat = app.register("Cat").await;
    let first = app.send_ok(&ann, conversation, "hide me").await;
    let second = app.send_ok(&ann, conversation, "keep me").await;
    let mut other_device = WsClient::connect(&app, &bob).await;

    let frame = b.delete(conversation, &first["id"], "me").await;
    let hidden = b.next_matching(ServerKind::MessageHidden, |h| h["ref"] == frame.as_str()).await;
    assert_eq!((&hidden["messageId"], &hidden["conversationId"], &hidden["changeSeq"]), (&first["id"], &json!(conversation), &json!(1)));
    let elsewhere = other_device.next_matching(ServerKind::MessageHidden, |_| true).await;
    assert!(elsewhere.get("ref").is_none() && elsewhere["messageId"] == first["id"], "{elsewhere}");
    // Again, over REST: harmless.
    assert_eq!(app.hide(&bob, conversation, &first).await.0, StatusCode::NO_CONTENT);
    // Ann is not told: nothing but messages reaches her before Bob's next one.
    let third = app.send_ok(&bob, conversation, "after").await;
    loop {
        let (kind, data) = a.recv().await;
        assert_eq!(kind, ServerKind::Message.as_str(), "{data}");
        if data["message"]["id"] == third["id"] {
            break;
        }
    }

    let ids = |messages: Vec<serde_json::Value>| messages.iter().map(|m| m["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(app.history(&bob, conversation).await), vec![second["id"].clone(), third["id"].clone()]);
    assert_eq!(ids(app.history(&ann, conversation).await), vec![first["id"].clone(), second["id"].clone(), third["id"].clone()]);
    // A fresh device gets every seq, the hidden one as a stub without content: no gap to resync forever.
    let synced = b.sync(json!({"conversations": [{"conversationId": conversation, "afterSeq": 0}]})).await;
    let messages = synced["conversations"][0]["messages"].as_array().unwrap().clone();
    assert_eq!(ids(messages.clone()), vec![first["id"].clone(), second["id"].clone(), third["id"].clone()]);
    assert_eq!(messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    let stub = &messages[0];
    assert!(stub["hiddenAt"].is_string() && stub.get("text").is_none() && stub.get("payload").is_none(), "{stub}");
    assert!(messages[1].get("hiddenAt").is_none() && messages[1]["text"] == "keep me");
    let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 3, "afterChange": 0}]});
    let synced = b.sync(cursor).await["conversations"][0].clone();
    assert_eq!((&synced["hidden"], &synced["changes"]), (&json!([first["id"]]), &json!([])), "{synced}");
    let (_, found) = app.get("/search?q=hide", Some(&bob.token)).await;
    assert_eq!(found["items"], json!([]), "{found}");

    caught_up(&context_of(&app.settings).await).await;
    assert_eq!(list(&app, &bob).await["items"][0]["unreadCount"], 1, "only `keep me` is unread");
    assert_error(&app.hide(&cat, conversation, &first).await, StatusCode::NOT_FOUND, "conversation_not_found");
    let frame = other_device.delete(conversation, &json!(uuid::Uuid::now_v7()), "me").await;
    other_device.error_answering(&frame, "message_not_found").await;
}
