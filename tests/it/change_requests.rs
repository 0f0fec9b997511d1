//! One `TestApp` method per message-change operation (edit, unsend, hide,
//! reactions), and the WebSocket frames of the same, for the tests of
//! message changes, replies and reactions.

use duet_common::ids::ConversationId;
use duet_common::protocol::{ClientKind, ServerKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser};
use crate::ws::WsClient;

fn message_path(conversation: ConversationId, message: &Value) -> String {
    format!("/conversations/{conversation}/messages/{}", message["id"].as_str().expect("a message id"))
}

impl TestApp {
    /// `PATCH` a message's text with `clientEditId`.
    pub async fn edit(
        &self,
        user: &TestUser,
        conversation: ConversationId,
        message: &Value,
        edit_id: &str,
        text: &str,
    ) -> (StatusCode, Value) {
        let body = json!({"text": text, "clientEditId": edit_id});
        self.request(Method::PATCH, &message_path(conversation, message), Some(&user.token), Some(body)).await
    }

    /// `DELETE` a message (unsend, for everyone).
    pub async fn unsend(&self, user: &TestUser, conversation: ConversationId, message: &Value) -> (StatusCode, Value) {
        self.request(Method::DELETE, &message_path(conversation, message), Some(&user.token), None).await
    }

    /// Hide a message for `user` only.
    pub async fn hide(&self, user: &TestUser, conversation: ConversationId, message: &Value) -> (StatusCode, Value) {
        self.post(&format!("{}/hide", message_path(conversation, message)), Some(&user.token), json!({})).await
    }

    /// Set (`Some`) or remove (`None`) `user`'s reaction.
    pub async fn react(&self, user: &TestUser, conversation: ConversationId, message: &Value, emoji: Option<&str>) -> (StatusCode, Value) {
        let path = format!("{}/reaction", message_path(conversation, message));
        match emoji {
            Some(emoji) => self.request(Method::PUT, &path, Some(&user.token), Some(json!({"emoji": emoji}))).await,
            None => self.request(Method::DELETE, &path, Some(&user.token), None).await,
        }
    }

    /// The whole history of a conversation as `user` sees it, oldest first.
    pub async fn history(&self, user: &TestUser, conversation: ConversationId) -> Vec<Value> {
        let (status, page) = self.get(&format!("/conversations/{conversation}/messages?limit=100"), Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"].as_array().expect("items").clone()
    }

    /// Sends a reply to `to`; returns the stored message.
    pub async fn reply(&self, from: &TestUser, conversation: ConversationId, to: &Value, text: &str) -> (StatusCode, Value) {
        let body = json!({"clientMsgId": uuid::Uuid::new_v4().simple().to_string(), "text": text, "replyTo": to["id"]});
        self.post(&format!("/conversations/{conversation}/messages"), Some(&from.token), body).await
    }
}

impl WsClient {
    /// `chat.message.edit`; returns the frame id.
    pub async fn edit(&mut self, conversation: ConversationId, message_id: &Value, edit_id: &str, text: &str) -> String {
        let data = json!({"conversationId": conversation, "messageId": message_id, "clientEditId": edit_id, "text": text});
        self.send(ClientKind::Edit, data).await
    }

    /// `chat.message.delete` with `scope` (`everyone` or `me`); returns the frame id.
    pub async fn delete(&mut self, conversation: ConversationId, message_id: &Value, scope: &str) -> String {
        self.send(ClientKind::Delete, json!({"conversationId": conversation, "messageId": message_id, "scope": scope})).await
    }

    /// `chat.reaction.set` (no emoji: remove); returns the frame id.
    pub async fn react(&mut self, conversation: ConversationId, message_id: &Value, emoji: Option<&str>) -> String {
        let mut data = json!({"conversationId": conversation, "messageId": message_id});
        if let (Some(emoji), Some(fields)) = (emoji, data.as_object_mut()) {
            fields.insert("emoji".into(), json!(emoji));
        }
        self.send(ClientKind::ReactionSet, data).await
    }

    /// The next `chat.message.updated` about `message_id` at change position `change_seq`; returns its data.
    pub async fn next_update(&mut self, message_id: &Value, change_seq: i64) -> Value {
        let id = message_id.clone();
        self.next_matching(ServerKind::MessageUpdated, move |d| d["message"]["id"] == id && d["message"]["changeSeq"] == change_seq).await
    }

    /// The `chat.message.updated` answering frame `reference`; returns its data.
    pub async fn update_answering(&mut self, reference: &str) -> Value {
        self.next_matching(ServerKind::MessageUpdated, |d| d["ref"] == reference).await
    }
}
