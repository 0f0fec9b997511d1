//! Example `data` for every frame type, published in the AsyncAPI document
//! (a test parses each into the protocol's own types). A `match` per
//! direction, so a new frame type cannot go without an example.

use serde_json::{Value, json};

use super::{ClientKind, ServerKind};

const CONVERSATION: &str = "0190f5a8-0000-7000-8000-000000000001";
const ANN: &str = "0190f5a8-1111-7000-8000-000000000001";
const BOB: &str = "0190f5a8-7a3c-7c4e-9d2a-3b1f0e9c8d7a";
const MESSAGE: &str = "0190f5a8-2222-7000-8000-000000000001";
const ATTACHMENT: &str = "0190f5a8-3333-7000-8000-000000000001";

/// Example `data` of a client frame.
pub fn client(kind: ClientKind) -> Vec<Value> {
    match kind {
        ClientKind::Auth => vec![json!({"token": "eyJhbGciOiJIUzI1NiJ9.e30.sig"})],
        ClientKind::Ping => vec![json!({})],
        ClientKind::PresenceSubscribe => vec![json!({"userIds": [BOB]})],
        ClientKind::Send => vec![
            json!({"conversationId": CONVERSATION, "clientMsgId": "c-42", "text": "Hello!"}),
            json!({"receiverId": BOB, "clientMsgId": "c-43", "type": "image", "text": "Look!", "payload": {"attachmentId": ATTACHMENT, "width": 1280, "height": 960}}),
            json!({"conversationId": CONVERSATION, "clientMsgId": "c-44", "type": "location", "payload": {"lat": 48.8584, "lng": 2.2945}}),
        ],
        ClientKind::Delivered | ClientKind::Read => {
            vec![json!({"conversationId": CONVERSATION, "seq": 17})]
        }
        ClientKind::Typing => vec![json!({"conversationId": CONVERSATION, "state": "start"})],
        ClientKind::Sync => {
            vec![json!({}), json!({"conversations": [{"conversationId": CONVERSATION, "afterSeq": 100, "afterChange": 7}], "limit": 100})]
        }
        ClientKind::Edit => {
            vec![json!({"conversationId": CONVERSATION, "messageId": MESSAGE, "clientEditId": "e-1", "text": "Hello again!"})]
        }
        ClientKind::Delete => vec![
            json!({"conversationId": CONVERSATION, "messageId": MESSAGE, "scope": "everyone"}),
            json!({"conversationId": CONVERSATION, "messageId": MESSAGE, "scope": "me"}),
        ],
        ClientKind::ReactionSet => vec![
            json!({"conversationId": CONVERSATION, "messageId": MESSAGE, "emoji": "👍"}),
            json!({"conversationId": CONVERSATION, "messageId": MESSAGE}),
        ],
    }
}

/// Example `data` of a server frame.
pub fn server(kind: ServerKind) -> Vec<Value> {
    match kind {
        ServerKind::AuthOk => {
            vec![json!({"userId": ANN, "sessionId": "5b0c8f3e-2a4d-4c1e-9f3a-7d6e5c4b3a21", "heartbeatIntervalMs": 20000})]
        }
        ServerKind::Pong => vec![json!({"ref": "f2"})],
        ServerKind::PresenceUpdate => vec![
            json!({"userId": BOB, "status": "offline", "lastSeenAt": "2026-11-28T17:00:00.123+00:00"}),
            json!({"ref": "f3", "userId": BOB, "status": "online"}),
        ],
        ServerKind::Ack => vec![json!({
            "ref": "f4", "clientMsgId": "c-42", "messageId": MESSAGE, "conversationId": CONVERSATION,
            "seq": 18, "createdAt": "2026-11-28T17:00:00.456+00:00",
        })],
        ServerKind::Message => vec![json!({"message": message(ANN, BOB, "Hello!", "c-42")})],
        ServerKind::Delivered => vec![json!({"conversationId": CONVERSATION, "seq": 18, "userId": BOB, "at": "2026-11-28T17:00:01+00:00"})],
        ServerKind::Read => vec![json!({"conversationId": CONVERSATION, "seq": 18, "userId": BOB, "at": "2026-11-28T17:00:02+00:00"})],
        ServerKind::Typing => {
            vec![json!({"conversationId": CONVERSATION, "userId": BOB, "state": "start"})]
        }
        ServerKind::SyncResult => vec![json!({
            "ref": "f9",
            "moreConversations": false,
            "conversations": [{
                "conversationId": CONVERSATION, "hasMore": false, "peerLastDeliveredSeq": 17,
                "peerLastReadSeq": 15, "unreadCount": 1, "lastChange": 9,
                "messages": [message(BOB, ANN, "Are you there?", "c-7")],
                "changes": [], "hidden": [],
            }],
        })],
        ServerKind::MessageUpdated => {
            let mut edited = message(ANN, BOB, "Hello again!", "c-42");
            if let Some(fields) = edited.as_object_mut() {
                fields.insert("editedAt".into(), json!("2026-11-28T17:05:00+00:00"));
                fields.insert("editCount".into(), json!(1));
                fields.insert("changeSeq".into(), json!(9));
                fields.insert("reactions".into(), json!([{"emoji": "👍", "count": 1, "userIds": [BOB]}]));
            }
            vec![
                json!({"ref": "f5", "change": "edited", "message": edited}),
                json!({"change": "deleted", "message": {
                    "id": MESSAGE, "conversationId": CONVERSATION, "seq": 18, "senderId": ANN, "receiverId": BOB,
                    "type": "text", "clientMsgId": "c-42", "createdAt": "2026-11-28T17:00:00.456+00:00",
                    "deletedAt": "2026-11-28T17:06:00+00:00", "changeSeq": 10,
                }}),
            ]
        }
        ServerKind::MessageHidden => vec![json!({"ref": "f6", "conversationId": CONVERSATION, "messageId": MESSAGE, "changeSeq": 11})],
        ServerKind::Error => vec![
            json!({"ref": "f4", "code": "rate_limited", "message": "rate limit exceeded; retry in 350 ms", "retryAfterMs": 350}),
            json!({"code": "invalid_json", "message": "not JSON: expected value at line 1 column 1"}),
        ],
    }
}

fn message(sender: &str, receiver: &str, text: &str, client_msg_id: &str) -> Value {
    json!({
        "id": MESSAGE, "conversationId": CONVERSATION, "seq": 18, "senderId": sender, "receiverId": receiver,
        "type": "text", "text": text, "clientMsgId": client_msg_id, "createdAt": "2026-11-28T17:00:00.456+00:00",
    })
}
