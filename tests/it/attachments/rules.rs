//! Who may use an attachment, and what the server checks of an upload
//! before anyone can send or fetch it.

use duet_common::ids::ConversationId;
use reqwest::StatusCode;
use serde_json::json;

use super::{Store, bytes, complete, create, create_ok, download, object_key, put, send, spawn_with, uploaded};
use crate::helpers::assert_error;

#[tokio::test]
async fn non_members_can_neither_upload_into_a_conversation_nor_learn_of_its_attachments() {
    let app = spawn_with(|_| {}).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let eve = app.register("Eve").await;
    let conversation = app.conversation(&ann, &bob).await;
    let photo = uploaded(&app, &ann, conversation, "image", "image/jpeg").await;
    let pending = create_ok(&app, &ann, conversation, "image", "image/jpeg", 10).await["attachmentId"].as_str().unwrap().to_owned();

    for id in [conversation, ConversationId::new()] {
        let body = json!({"kind": "image", "contentType": "image/jpeg", "size": 10});
        assert_error(&create(&app, &eve, id, body).await, StatusCode::NOT_FOUND, "conversation_not_found");
        for attachment in [&photo, &pending] {
            assert_error(&download(&app, &eve, id, attachment).await, StatusCode::NOT_FOUND, "conversation_not_found");
            assert_error(&complete(&app, &eve, id, attachment).await, StatusCode::NOT_FOUND, "conversation_not_found");
        }
    }
    // Through a conversation of her own, Eve finds nothing either.
    let eves = app.conversation(&eve, &ann).await;
    assert_error(&download(&app, &eve, eves, &photo).await, StatusCode::NOT_FOUND, "attachment_not_found");
    let (status, sent) = send(&app, &eve, eves, "image", json!({"attachmentId": photo})).await;
    assert_error(&(status, sent), StatusCode::NOT_FOUND, "attachment_not_found");

    // Bob is a member: he fetches the uploaded one, but a pending upload is not his to see or complete.
    assert_eq!(download(&app, &bob, conversation, &photo).await.0, StatusCode::OK);
    assert_error(&download(&app, &bob, conversation, &pending).await, StatusCode::NOT_FOUND, "attachment_not_found");
    assert_error(&complete(&app, &bob, conversation, &pending).await, StatusCode::NOT_FOUND, "attachment_not_found");
    assert_error(&download(&app, &ann, conversation, &pending).await, StatusCode::CONFLICT, "attachment_not_uploaded");
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_error(&download(&app, &ann, conversation, &unknown).await, StatusCode::NOT_FOUND, "attachment_not_found");
}

#[tokio::test]
async fn an_attachment_message_needs_a_completed_upload_of_the_senders_in_the_same_conversation() {
    let app = spawn_with(|_| {}).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let carol = app.register("Carol").await;
    let conversation = app.conversation(&ann, &bob).await;
    let with_carol = app.conversation(&ann, &carol).await;
    let photo = uploaded(&app, &ann, conversation, "image", "image/webp").await;
    let elsewhere = uploaded(&app, &ann, with_carol, "image", "image/webp").await;
    let bobs = uploaded(&app, &bob, conversation, "image", "image/webp").await;
    let pending = create_ok(&app, &ann, conversation, "file", "application/pdf", 10).await["attachmentId"].as_str().unwrap().to_owned();

    let refusals = [
        ("image", json!({"attachmentId": elsewhere}), StatusCode::NOT_FOUND, "attachment_not_found"),
        ("image", json!({"attachmentId": bobs}), StatusCode::NOT_FOUND, "attachment_not_found"),
        ("image", json!({"attachmentId": uuid::Uuid::now_v7()}), StatusCode::NOT_FOUND, "attachment_not_found"),
        ("file", json!({"attachmentId": pending}), StatusCode::CONFLICT, "attachment_not_uploaded"),
        ("file", json!({"attachmentId": photo}), StatusCode::BAD_REQUEST, "attachment_kind_mismatch"),
        ("audio", json!({"attachmentId": photo}), StatusCode::BAD_REQUEST, "attachment_kind_mismatch"),
        // The old free-form payloads are gone for attachment types.
        ("image", json!({"url": "https://cdn.example/1.png"}), StatusCode::BAD_REQUEST, "invalid_payload"),
        ("image", json!({"attachmentId": photo, "url": "https://cdn.example/1.png"}), StatusCode::BAD_REQUEST, "invalid_payload"),
        ("image", json!({"attachmentId": photo, "durationMs": 5}), StatusCode::BAD_REQUEST, "invalid_payload"),
    ];
    for (kind, payload, status, code) in refusals {
        assert_error(&send(&app, &ann, conversation, kind, payload).await, status, code);
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 0, "nothing refused was stored");

    // The right one goes through; a location keeps a free payload.
    assert_eq!(send(&app, &ann, conversation, "image", json!({"attachmentId": photo})).await.0, StatusCode::CREATED);
    let (status, location) = send(&app, &ann, conversation, "location", json!({"lat": 48.85, "lng": 2.29, "label": "Paris"})).await;
    assert_eq!(status, StatusCode::CREATED, "{location}");
    assert_eq!(location["payload"], json!({"lat": 48.85, "lng": 2.29, "label": "Paris"}));
}

#[tokio::test]
async fn completing_an_upload_of_another_size_or_type_refuses_it_and_deletes_the_object() {
    let app = spawn_with(|_| {}).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let store = Store::new(&app);
    let clip = bytes(2048);

    let created = create_ok(&app, &ann, conversation, "video", "video/mp4", clip.len()).await;
    let id = created["attachmentId"].as_str().unwrap().to_owned();
    let key = object_key(conversation, &id);
    assert_error(&complete(&app, &ann, conversation, &id).await, StatusCode::CONFLICT, "upload_missing");

    // The presigned URL admits only the declared size and type: the store refuses others.
    assert_eq!(put(&created, bytes(4096)).await, StatusCode::FORBIDDEN);
    let mut other_type = created.clone();
    other_type["upload"]["headers"]["Content-Type"] = json!("video/webm");
    assert_eq!(put(&other_type, clip.clone()).await, StatusCode::FORBIDDEN);
    assert!(!store.exists(&key).await);

    // Written past the URL (a store that does not check signed headers), the server's HEAD catches it.
    for (content_type, body) in [("video/mp4", bytes(4096)), ("video/webm", clip.clone())] {
        store.put(&key, content_type, body).await;
        assert_error(&complete(&app, &ann, conversation, &id).await, StatusCode::CONFLICT, "upload_mismatch");
        assert!(!store.exists(&key).await, "the refused object of {content_type} is deleted");
    }
    assert_error(
        &send(&app, &ann, conversation, "video", json!({"attachmentId": id})).await,
        StatusCode::CONFLICT,
        "attachment_not_uploaded",
    );

    // The declared file, through the same URL, completes.
    assert_eq!(put(&created, clip).await, StatusCode::OK);
    assert_eq!(complete(&app, &ann, conversation, &id).await.0, StatusCode::OK);
    assert_eq!(
        send(&app, &ann, conversation, "video", json!({"attachmentId": id, "width": 1280, "height": 720, "durationMs": 42})).await.0,
        StatusCode::CREATED
    );
}
