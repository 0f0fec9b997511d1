//! Gateway: authentication, the send → ack → new → delivered → read round
//! trip, idempotency shared with REST, and multi-device fan-out.

use duet_common::protocol::{ClientKind, ServerKind};
use duet_common::settings::DEV_JWT_SECRET;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{claims_of, sign_with_kid};
use crate::helpers::TestApp;
use crate::ws::{Chat, WsClient, open};

#[tokio::test]
async fn bearer_header_and_auth_frame_both_authenticate() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let by_header = WsClient::connect(&app, &ann).await;
    let by_frame = WsClient::connect_with_auth_frame(&app, &ann).await;
    assert_ne!(by_header.session_id, by_frame.session_id, "each connection is its own session");
}

#[tokio::test]
async fn a_bad_bearer_header_gets_unauthorized_then_close_4401() {
    let app = TestApp::spawn().await;
    let stream = open(app.addr, &[("authorization", "Bearer not-a-jwt")]).await.expect("the upgrade itself succeeds");
    let mut client = WsClient::from_stream(stream);
    client.expect_error(None, "unauthorized").await;
    assert_eq!(client.expect_close().await, 4401);
}

#[tokio::test]
async fn an_expired_token_in_the_auth_frame_gets_token_expired_then_close_4401() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": ann.id, "sid": claims_of(&ann.token)["sid"], "iss": app.settings.jwt_issuer, "aud": app.settings.jwt_audience,
        "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600, "jti": uuid::Uuid::new_v4(),
    });
    let expired = sign_with_kid(claims, jsonwebtoken::Algorithm::HS256, DEV_JWT_SECRET.as_bytes(), Some("default"));
    let mut client = WsClient::raw(&app).await;
    let id = client.send(ClientKind::Auth, json!({"token": expired})).await;
    client.expect_error(Some(&id), "token_expired").await;
    assert_eq!(client.expect_close().await, 4401);
}

#[tokio::test]
async fn no_auth_within_the_timeout_closes_4408() {
    let app = TestApp::spawn_with(|s| s.auth_timeout_secs = 1).await;
    let mut client = WsClient::raw(&app).await;
    assert_eq!(client.expect_close().await, 4408);
}

#[tokio::test]
async fn frames_before_auth_are_refused_and_auth_still_works_after() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let mut client = WsClient::raw(&app).await;
    let id = client.send(ClientKind::Ping, json!({})).await;
    client.expect_error(Some(&id), "unauthorized").await;
    client.send(ClientKind::Auth, json!({"token": ann.token})).await;
    let ok = client.expect(ServerKind::AuthOk).await;
    assert_eq!(ok["userId"], ann.id.to_string());
}

#[tokio::test]
async fn send_ack_new_delivered_read_round_trip() {
    let app = TestApp::spawn().await;
    let Chat { ann, bob, conversation, mut a, mut b } = Chat::open(&app).await;

    let ack = a.send_message(conversation, "  hello Bob  ").await;
    assert_eq!(ack["conversationId"], conversation.to_string());
    assert_eq!(ack["seq"], 1);
    assert!(ack["createdAt"].as_str().is_some());

    let message = b.next_message().await;
    assert_eq!(message["id"], ack["messageId"]);
    assert_eq!(message["seq"], 1);
    assert_eq!(message["text"], "hello Bob", "text is trimmed as over REST");
    assert_eq!(message["senderId"], ann.id.to_string());

    b.delivered(conversation, 1).await;
    let delivered = a.next_matching(ServerKind::Delivered, |_| true).await;
    assert_eq!((delivered["seq"].as_i64(), delivered["userId"].as_str()), (Some(1), Some(bob.id.to_string().as_str())));
    assert_eq!(delivered["conversationId"], conversation.to_string());
    assert!(delivered["at"].as_str().is_some());

    b.read(conversation, 1).await;
    let read = a.next_matching(ServerKind::Read, |_| true).await;
    assert_eq!((read["seq"].as_i64(), read["userId"].as_str()), (Some(1), Some(bob.id.to_string().as_str())));

    let stored: (i64, i64) =
        sqlx::query_as("select last_delivered_seq, last_read_seq from conversation_members where conversation_id = $1 and user_id = $2")
            .bind(conversation)
            .bind(bob.id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, (1, 1));
}

#[tokio::test]
async fn a_send_to_a_receiver_id_creates_the_conversation() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let mut a = WsClient::connect(&app, &ann).await;
    let mut b = WsClient::connect(&app, &bob).await;
    let ack = a.send_message_with(json!({"receiverId": bob.id, "clientMsgId": "first", "text": "hi"})).await;
    assert_eq!(ack["seq"], 1);
    let message = b.next_message().await;
    assert_eq!(message["conversationId"], ack["conversationId"]);
}

#[tokio::test]
async fn a_resend_over_websocket_or_rest_returns_the_same_message() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;
    let data = json!({"conversationId": conversation, "clientMsgId": "retry-1", "text": "once"});
    let first = a.send_message_with(data.clone()).await;
    let again = a.send_message_with(data).await;
    assert_eq!((&first["messageId"], &first["seq"]), (&again["messageId"], &again["seq"]));
    let (status, rest) = app.send(&ann, conversation, "retry-1", "once").await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(rest["id"], first["messageId"]);
    let count: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn every_receiver_session_and_the_senders_other_sessions_get_the_message() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut ann_phone = WsClient::connect(&app, &ann).await;
    let mut ann_laptop = WsClient::connect(&app, &ann).await;
    let mut bob_phone = WsClient::connect(&app, &bob).await;
    let mut bob_laptop = WsClient::connect(&app, &bob).await;

    let ack = ann_phone.send_message(conversation, "to all your devices").await;
    for other in [&mut ann_laptop, &mut bob_phone, &mut bob_laptop] {
        let message = other.next_message().await;
        assert_eq!(message["id"], ack["messageId"]);
    }
    // The sending device has its ack and gets no copy: up to the pong of a
    // later ping, nothing but the second ack arrives.
    ann_phone.send_message(conversation, "second").await;
    let ping = ann_phone.send(ClientKind::Ping, json!({})).await;
    loop {
        let (kind, data) = ann_phone.recv().await;
        assert_ne!(kind, ServerKind::Message.as_str(), "the sender's own device got its message back: {data}");
        if kind == ServerKind::Pong.as_str() && data["ref"] == ping.as_str() {
            break;
        }
    }
    let second: Value = bob_laptop.next_message().await;
    assert_eq!(second["seq"], 2);
}

/// A session ends with 4401 when its token expires: the client reconnects
/// with a new one (REST refuses the old token from then on too).
#[tokio::test]
async fn a_session_is_closed_4401_when_its_token_expires() {
    let app = TestApp::spawn_with(|s| s.jwt_ttl_secs = 2).await;
    let ann = app.register("Ann").await;
    let mut a = WsClient::connect(&app, &ann).await;
    let (_, close) = a.drain_until_gone().await;
    assert_eq!(close, Some(4401));
}

/// A valid token for an account that no longer exists opens nothing, as on REST.
#[tokio::test]
async fn a_token_of_a_deleted_account_is_refused_4401() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    sqlx::query("delete from users where id = $1").bind(ann.id).execute(&app.db).await.unwrap();
    let stream = open(app.addr, &[("authorization", &format!("Bearer {}", ann.token))]).await.expect("the upgrade succeeds");
    let (frames, close) = WsClient::unauthenticated(stream).drain_until_gone().await;
    assert_eq!(close, Some(4401));
    // Deleting an account deletes its sign-ins: the token's session is gone.
    assert!(frames.iter().any(|(kind, data)| kind == "error" && data["code"] == "session_revoked"), "{frames:?}");
}
