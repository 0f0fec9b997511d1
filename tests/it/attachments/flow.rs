//! The whole way of an attachment: declared, uploaded to the store through
//! the presigned URL, checked, sent in a message, and downloaded by the peer.

use duet::Service;
use duet_common::protocol::ServerKind;
use reqwest::StatusCode;
use serde_json::json;

use super::{Store, bytes, complete, create, download, object_key, put, send, spawn_with, uploaded};
use crate::helpers::assert_error;
use crate::jobs::PushTest;
use crate::ws::WsClient;

#[tokio::test]
async fn an_image_uploaded_through_its_presigned_url_is_downloaded_by_the_peer_byte_for_byte() {
    let app = spawn_with(|_| {}).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let photo = bytes(300 * 1024);

    let body = json!({"kind": "image", "contentType": "image/png", "size": photo.len(), "fileName": "beach.png"});
    let (status, created) = create(&app, &ann, conversation, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["attachmentId"].as_str().unwrap().to_owned();
    let upload = &created["upload"];
    assert_eq!(upload["headers"], json!({"Content-Type": "image/png"}));
    assert!(upload["url"].as_str().unwrap().contains(&format!("/conversations/{conversation}/{id}")), "{upload}");
    assert!(upload["expiresAt"].as_str().is_some(), "{upload}");
    assert_eq!(put(&created, photo.clone()).await, StatusCode::OK);
    let (status, completed) = complete(&app, &ann, conversation, &id).await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(
        completed,
        json!({"attachmentId": id, "kind": "image", "contentType": "image/png", "size": photo.len(), "fileName": "beach.png"})
    );

    // Sent with a caption and drawing hints: the server stores what it checked.
    let messages = format!("/conversations/{conversation}/messages");
    let send = json!({"clientMsgId": "photo-1", "type": "image", "text": "the beach", "payload": {"attachmentId": id, "width": 640, "height": 480}});
    let (status, message) = app.post(&messages, Some(&ann.token), send.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let payload =
        json!({"attachmentId": id, "contentType": "image/png", "size": photo.len(), "fileName": "beach.png", "width": 640, "height": 480});
    assert_eq!(message["payload"], payload);
    assert_eq!(message["text"], "the beach");

    // Bob finds it in the history and fetches the bytes.
    let (status, history) = app.get(&format!("/conversations/{conversation}/messages"), Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["items"][0]["payload"], payload, "{history}");
    let (status, file) = download(&app, &bob, conversation, &id).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(
        (file["kind"].as_str(), file["contentType"].as_str(), file["fileName"].as_str()),
        (Some("image"), Some("image/png"), Some("beach.png"))
    );
    let response = reqwest::get(file["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(response.bytes().await.unwrap() == photo, "the downloaded bytes differ from the uploaded ones");

    // Completing again changes nothing; a retry of the send returns the stored message.
    assert_eq!(complete(&app, &ann, conversation, &id).await, (StatusCode::OK, completed));
    let (status, again) = app.post(&messages, Some(&ann.token), send).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &message["id"]), "{again}");

    // Unsent: the object goes with the content; the URL Bob holds finds nothing, and no new one is issued.
    let store = Store::new(&app);
    assert!(store.exists(&object_key(conversation, &id)).await);
    assert_eq!(app.unsend(&ann, conversation, &message).await.0, StatusCode::OK);
    assert!(!store.exists(&object_key(conversation, &id)).await, "the unsent message's object is still in the store");
    assert_eq!(reqwest::get(file["url"].as_str().unwrap()).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_error(&download(&app, &bob, conversation, &id).await, StatusCode::NOT_FOUND, "attachment_not_found");
}

#[tokio::test]
async fn a_voice_note_sent_over_the_websocket_reaches_the_peer_with_the_servers_payload() {
    let app = spawn_with(|_| {}).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let voice = uploaded(&app, &ann, conversation, "audio", "audio/mp4").await;
    let mut a = WsClient::connect(&app, &ann).await;
    let mut b = WsClient::connect(&app, &bob).await;

    let payload = json!({"attachmentId": voice, "durationMs": 3100, "waveform": [0, 40, 255, 12]});
    a.send_message_with(json!({"conversationId": conversation, "clientMsgId": "voice-1", "type": "audio", "payload": payload})).await;
    let message = b.next_message().await;
    assert_eq!(message["type"], "audio");
    assert_eq!(
        message["payload"],
        json!({"attachmentId": voice, "contentType": "audio/mp4", "size": 1024, "durationMs": 3100, "waveform": [0, 40, 255, 12]})
    );

    // A refusal answers the frame by its id.
    let pending = create(&app, &ann, conversation, json!({"kind": "audio", "contentType": "audio/mp4", "size": 10})).await.1;
    let frame = a
        .send(
            duet_common::protocol::ClientKind::Send,
            json!({"conversationId": conversation, "clientMsgId": "voice-2", "type": "audio", "payload": {"attachmentId": pending["attachmentId"]}}),
        )
        .await;
    let error = a.next_matching(ServerKind::Error, |e| e["ref"] == frame.as_str()).await;
    assert_eq!(error["code"], "attachment_not_uploaded", "{error}");
    let frame = a
        .send(
            duet_common::protocol::ClientKind::Send,
            json!({"conversationId": conversation, "clientMsgId": "voice-3", "type": "image", "payload": {"attachmentId": voice}}),
        )
        .await;
    let error = a.next_matching(ServerKind::Error, |e| e["ref"] == frame.as_str()).await;
    assert_eq!(error["code"], "attachment_kind_mismatch", "{error}");
}

#[tokio::test]
async fn a_push_for_an_attachment_says_what_it_is_and_never_carries_its_url_or_key() {
    let t = PushTest::spawn_configured(Service::ALL, |settings| {
        crate::helpers::with_s3(settings);
        settings.push_preview = true;
    })
    .await;
    let (ann, bob, iphone, conversation) = t.ann_and_bob_with_an_iphone().await;
    let photo = uploaded(&t.app, &ann, conversation, "image", "image/jpeg").await;
    let (status, sent) = send(&t.app, &ann, conversation, "image", json!({"attachmentId": photo})).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    t.fake.wait_requests(&iphone, 1).await;
    assert_eq!(t.fake.requests(&iphone)[0].body["aps"]["alert"]["body"], "Photo");

    // Read, so the next message notifies again: a voice note.
    let (status, _) = t.app.post(&format!("/conversations/{conversation}/read"), Some(&bob.token), json!({"seq": 1})).await;
    assert_eq!(status, StatusCode::OK);
    let voice = uploaded(&t.app, &ann, conversation, "audio", "audio/aac").await;
    let (status, sent) = send(&t.app, &ann, conversation, "audio", json!({"attachmentId": voice, "durationMs": 900})).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    t.fake.wait_for("the voice note's alert", |s| s.requests.iter().any(|r| r.device == iphone && r.body["seq"] == 2)).await;
    let requests = t.fake.requests(&iphone);
    let voice_alert = requests.iter().find(|r| r.body["seq"] == 2).expect("an alert for seq 2");
    assert_eq!(voice_alert.body["aps"]["alert"]["body"], "Voice message");
    for request in &requests {
        let text = request.body.to_string();
        for secret in [photo.as_str(), voice.as_str(), "http", "conversations/"] {
            assert!(!text.contains(secret), "{secret} in a push: {text}");
        }
    }
}
