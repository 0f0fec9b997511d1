//! Replies: the quoted preview, read live (the latest text after an edit,
//! a tombstone after an unsend), and replies the conversation cannot hold.

use duet_common::protocol::ServerKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};
use crate::ws::Chat;

#[tokio::test]
async fn a_reply_quotes_the_latest_text_and_then_the_tombstone() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut a, mut b } = Chat::open(&app).await;
    let original = app.send_ok(&ann, conversation, "lunch?").await;

    // Over the WebSocket: the ack, and the peer's copy carries the preview.
    let ack =
        b.send_message_with(json!({"conversationId": conversation, "clientMsgId": "r-1", "text": "yes", "replyTo": original["id"]})).await;
    let delivered = a.next_matching(ServerKind::Message, |m| m["message"]["id"] == ack["messageId"]).await;
    let preview = json!({"id": original["id"], "seq": 1, "senderId": ann.id, "type": "text", "text": "lunch?"});
    assert_eq!(delivered["message"]["replyTo"], preview);

    // Over REST: the answer carries it too.
    let (status, reply) = app.reply(&ann, conversation, &original, "12:30").await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["replyTo"], preview);

    app.edit(&ann, conversation, &original, "e-1", "lunch at noon?").await;
    let history = app.history(&bob, conversation).await;
    assert_eq!(history[1]["replyTo"]["text"], "lunch at noon?");
    assert_eq!(history[2]["replyTo"]["text"], "lunch at noon?");

    app.unsend(&ann, conversation, &original).await;
    let history = app.history(&bob, conversation).await;
    for reply in &history[1..] {
        assert!(reply["replyTo"]["deletedAt"].is_string() && reply["replyTo"].get("text").is_none(), "{reply}");
    }
    // A reply to a tombstone is refused: there is nothing left to quote.
    assert_error(&app.reply(&bob, conversation, &original, "what?").await, StatusCode::NOT_FOUND, "reply_not_found");
}

#[tokio::test]
async fn a_reply_to_a_message_of_another_conversation_is_refused() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut b, .. } = Chat::open(&app).await;
    let cat = app.register("Cat").await;
    let elsewhere = app.conversation(&ann, &cat).await;
    let private = app.send_ok(&ann, elsewhere, "between Ann and Cat").await;

    assert_error(&app.reply(&bob, conversation, &private, "peek").await, StatusCode::NOT_FOUND, "reply_not_found");
    let unknown = json!({"id": uuid::Uuid::now_v7()});
    assert_error(&app.reply(&bob, conversation, &unknown, "peek").await, StatusCode::NOT_FOUND, "reply_not_found");
    let data = json!({"conversationId": conversation, "clientMsgId": "r-2", "text": "peek", "replyTo": private["id"]});
    let frame = b.send(duet_common::protocol::ClientKind::Send, data).await;
    b.error_answering(&frame, "reply_not_found").await;
    assert!(app.history(&bob, conversation).await.is_empty());
}
