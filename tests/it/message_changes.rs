//! Edit and unsend, over REST and the WebSocket: live updates to both
//! members, idempotent edits, the edit window, who may change what, and
//! an unsent message's content gone from PostgreSQL and search.

use duet_common::protocol::ServerKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::read_side_support::{caught_up, context_of, list};
use crate::ws::{Chat, WsClient};

impl WsClient {
    /// The `error` frame answering frame `reference`, skipping other frames; asserts its code.
    pub async fn error_answering(&mut self, reference: &str, code: &str) -> Value {
        let error = self.next_matching(ServerKind::Error, |e| e["ref"] == reference).await;
        assert_eq!(error["code"], code, "{error}");
        error
    }
}

#[tokio::test]
async fn an_edit_reaches_both_members_live_and_a_retry_by_client_edit_id_gets_the_same_answer() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut a, mut b } = Chat::open(&app).await;
    let message = app.send_ok(&ann, conversation, "hello").await;
    let id = message["id"].clone();

    // REST: every session of both members hears of it.
    let (status, edited) = app.edit(&ann, conversation, &message, "e-1", "  hello there ").await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!((&edited["text"], &edited["editCount"], &edited["seq"]), (&json!("hello there"), &json!(1), &message["seq"]));
    assert!(edited["editedAt"].is_string() && edited["changeSeq"] == 1, "{edited}");
    for session in [&mut a, &mut b] {
        let update = session.next_update(&id, 1).await;
        assert_eq!((&update["change"], &update["message"]), (&json!("edited"), &edited), "{update}");
        assert!(update.get("ref").is_none(), "{update}");
    }

    // A retry answers the same; the same key for another text or message is a conflict.
    assert_eq!(app.edit(&ann, conversation, &message, "e-1", "hello there").await, (StatusCode::OK, edited.clone()));
    assert_error(&app.edit(&ann, conversation, &message, "e-1", "other").await, StatusCode::CONFLICT, "idempotency_conflict");
    let second = app.send_ok(&ann, conversation, "second").await;
    assert_error(&app.edit(&ann, conversation, &second, "e-1", "hello there").await, StatusCode::CONFLICT, "idempotency_conflict");

    // WebSocket: the acting session gets its answer with `ref`, the peer without.
    let frame = a.edit(conversation, &id, "e-2", "third time").await;
    let answer = a.update_answering(&frame).await;
    assert_eq!((&answer["message"]["text"], &answer["message"]["editCount"]), (&json!("third time"), &json!(2)), "{answer}");
    let update = b.next_update(&id, 2).await;
    assert_eq!(update["message"], answer["message"]);
    let history = app.history(&bob, conversation).await;
    assert_eq!(history[0], answer["message"], "history shows the latest text");
}

#[tokio::test]
async fn only_the_sender_edits_or_unsends_and_only_in_their_own_conversation() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, a: _a, mut b } = Chat::open(&app).await;
    let cat = app.register("Cat").await;
    let ann_cat = app.conversation(&ann, &cat).await;
    let message = app.send_ok(&ann, conversation, "mine").await;

    assert_error(&app.edit(&bob, conversation, &message, "e-1", "theirs").await, StatusCode::FORBIDDEN, "not_message_sender");
    assert_error(&app.unsend(&bob, conversation, &message).await, StatusCode::FORBIDDEN, "not_message_sender");
    assert_error(&app.edit(&cat, conversation, &message, "e-1", "x").await, StatusCode::NOT_FOUND, "conversation_not_found");
    assert_error(&app.unsend(&cat, conversation, &message).await, StatusCode::NOT_FOUND, "conversation_not_found");
    assert_error(&app.edit(&ann, ann_cat, &message, "e-1", "x").await, StatusCode::NOT_FOUND, "message_not_found");
    assert_error(&app.unsend(&ann, ann_cat, &message).await, StatusCode::NOT_FOUND, "message_not_found");
    assert_error(&app.edit(&ann, conversation, &message, "e-1", "   ").await, StatusCode::BAD_REQUEST, "text_empty");
    assert_error(&app.edit(&ann, conversation, &message, "a b", "x").await, StatusCode::BAD_REQUEST, "bad_request");
    let unknown = json!({"id": uuid::Uuid::now_v7()});
    assert_error(&app.edit(&ann, conversation, &unknown, "e-1", "x").await, StatusCode::NOT_FOUND, "message_not_found");

    let id = message["id"].clone();
    let frame = b.edit(conversation, &id, "e-1", "theirs").await;
    b.error_answering(&frame, "not_message_sender").await;
    let frame = b.delete(conversation, &id, "everyone").await;
    b.error_answering(&frame, "not_message_sender").await;
    let frame = b.edit(ann_cat, &id, "e-1", "x").await;
    b.error_answering(&frame, "conversation_not_found").await;
    let frame = b.edit(conversation, &id, "a b", "x").await;
    b.error_answering(&frame, "invalid_client_edit_id").await;
    let frame = b.delete(conversation, &id, "nobody").await;
    b.error_answering(&frame, "invalid_data").await;

    // A tombstone cannot be edited.
    assert_eq!(app.unsend(&ann, conversation, &message).await.0, StatusCode::OK);
    assert_error(&app.edit(&ann, conversation, &message, "e-9", "back").await, StatusCode::CONFLICT, "message_deleted");
}

/// The window is a setting: with none left at all, every edit and unsend is refused at once.
#[tokio::test]
async fn edits_and_unsends_past_the_edit_window_are_refused() {
    let app = TestApp::spawn_with(|s| s.edit_window_secs = 0).await;
    let Chat { ann, conversation, mut a, .. } = Chat::open(&app).await;
    let message = app.send_ok(&ann, conversation, "too late").await;
    assert_error(&app.edit(&ann, conversation, &message, "e-1", "x").await, StatusCode::FORBIDDEN, "edit_window_closed");
    assert_error(&app.unsend(&ann, conversation, &message).await, StatusCode::FORBIDDEN, "edit_window_closed");
    let frame = a.edit(conversation, &message["id"], "e-2", "x").await;
    a.error_answering(&frame, "edit_window_closed").await;
}

#[tokio::test]
async fn an_unsent_message_is_a_tombstone_everywhere_and_its_content_is_gone_from_postgres_and_search() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut a, mut b } = Chat::open(&app).await;
    let first = app.send_ok(&ann, conversation, "zebra plans").await;
    let (status, reply) = app.reply(&bob, conversation, &first, "noted").await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (_, edited) = app.edit(&ann, conversation, &first, "e-1", "zebra plans, edited").await;
    assert_eq!(edited["editCount"], 1);
    let last = app.send_ok(&ann, conversation, "cheetah").await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    assert_eq!(list(&app, &bob).await["items"][0]["unreadCount"], 2);

    // Over the WebSocket: the answer with `ref`, the peer without.
    let frame = a.delete(conversation, &first["id"], "everyone").await;
    let tombstone = a.update_answering(&frame).await;
    assert_eq!(tombstone["change"], "deleted");
    let message = &tombstone["message"];
    assert!(message["deletedAt"].is_string(), "{message}");
    for gone in ["text", "payload", "replyTo", "reactions"] {
        assert!(message.get(gone).is_none(), "{gone} left in {message}");
    }
    assert_eq!((&message["id"], &message["seq"], &message["senderId"]), (&first["id"], &first["seq"], &first["senderId"]));
    assert_eq!(b.next_update(&first["id"], 2).await["message"], *message);
    // Over REST; a second unsend answers the same tombstone.
    let (status, last_tombstone) = app.unsend(&ann, conversation, &last).await;
    assert_eq!(status, StatusCode::OK, "{last_tombstone}");
    assert_eq!(app.unsend(&ann, conversation, &last).await, (StatusCode::OK, last_tombstone.clone()));

    // Gone from PostgreSQL: the row, every outbox copy (its events and the reply's preview), search.
    for word in ["zebra", "cheetah"] {
        let in_messages: i64 = sqlx::query_scalar("select count(*) from messages t where t::text like '%' || $1 || '%'")
            .bind(word)
            .fetch_one(&app.db)
            .await
            .unwrap();
        let in_outbox: i64 = sqlx::query_scalar("select count(*) from outbox t where t::text like '%' || $1 || '%'")
            .bind(word)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!((in_messages, in_outbox), (0, 0), "`{word}` left in messages or outbox");
    }
    let (status, found) = app.get("/search?q=zebra", Some(&bob.token)).await;
    assert_eq!((status, found["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{found}");

    // History: tombstones in place; the reply quotes a tombstone.
    let history = app.history(&bob, conversation).await;
    assert_eq!(history[0], *message);
    assert!(history[1]["replyTo"]["deletedAt"].is_string() && history[1]["replyTo"].get("text").is_none(), "{}", history[1]);
    assert_eq!(history[2], last_tombstone);

    // The conversation list: unread corrected, the preview is the tombstone.
    caught_up(&ctx).await;
    let entry = list(&app, &bob).await["items"][0].clone();
    assert_eq!(entry["unreadCount"], 0, "{entry}");
    assert_eq!(entry["lastMessage"], last_tombstone, "{entry}");
}

/// A device offline through an edit, an unsend, a reaction and a new
/// (edited) message gets each final state exactly once, from its two cursors.
#[tokio::test]
async fn an_offline_device_syncing_after_an_edit_and_an_unsend_sees_the_final_state_once() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut b, .. } = Chat::open(&app).await;
    let mut sent = Vec::new();
    for i in 1..=3 {
        sent.push(app.send_ok(&ann, conversation, &format!("m{i}")).await);
    }
    let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 0, "afterChange": 0}]});
    let first = b.sync(cursor).await["conversations"][0].clone();
    assert_eq!((first["messages"].as_array().unwrap().len(), &first["lastChange"]), (3, &json!(0)), "{first}");
    assert_eq!((&first["changes"], &first["hidden"]), (&json!([]), &json!([])));

    // While the device is away.
    app.edit(&ann, conversation, &sent[0], "e-1", "m1 once").await;
    app.edit(&ann, conversation, &sent[0], "e-2", "m1 final").await;
    app.unsend(&ann, conversation, &sent[1]).await;
    assert_eq!(app.react(&bob, conversation, &sent[2], Some("👍")).await.0, StatusCode::OK);
    let fourth = app.send_ok(&ann, conversation, "m4").await;
    let (_, fourth_final) = app.edit(&ann, conversation, &fourth, "e-3", "m4 final").await;

    let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 3, "afterChange": 0}]});
    let result = b.sync(cursor).await["conversations"][0].clone();
    let history = app.history(&bob, conversation).await;
    assert_eq!(result["messages"], json!([fourth_final]), "new messages in their final state: {result}");
    assert_eq!(result["changes"], json!([history[0], history[1], history[2]]), "each changed message once, in change order");
    assert_eq!(result["changes"][0]["text"], "m1 final");
    assert!(result["changes"][1]["deletedAt"].is_string());
    assert_eq!(result["changes"][2]["reactions"], json!([{"emoji": "👍", "count": 1, "userIds": [bob.id]}]));
    assert_eq!((&result["lastChange"], result.get("hasMoreChanges")), (&json!(5), None), "{result}");

    // Paged one change at a time, the same changes come, once each.
    let mut after_change = 0;
    let mut paged = Vec::new();
    loop {
        let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 4, "afterChange": after_change}], "limit": 1});
        let page = b.sync(cursor).await["conversations"][0].clone();
        paged.extend(page["changes"].as_array().unwrap().iter().map(|m| m["id"].clone()));
        after_change = page["lastChange"].as_i64().unwrap();
        if page.get("hasMoreChanges").is_none() {
            break;
        }
    }
    assert_eq!(paged, vec![history[0]["id"].clone(), history[1]["id"].clone(), history[2]["id"].clone(), fourth["id"].clone()]);

    // Nothing new: nothing again.
    let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 4, "afterChange": 5}]});
    let quiet = b.sync(cursor).await["conversations"][0].clone();
    assert_eq!((&quiet["messages"], &quiet["changes"], &quiet["hidden"]), (&json!([]), &json!([]), &json!([])));
    let cursor = json!({"conversations": [{"conversationId": conversation, "afterSeq": 0, "afterChange": -1}]});
    let frame = b.send(duet_common::protocol::ClientKind::Sync, cursor).await;
    b.error_answering(&frame, "invalid_seq").await;
}
