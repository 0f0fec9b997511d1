use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn twenty_concurrent_creates_make_one_conversation() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let calls = (0..20).map(|i| {
        let (from, to) = if i % 2 == 0 { (&ann, &bob) } else { (&bob, &ann) };
        app.post("/conversations", Some(&from.token), json!({"peerId": to.id}))
    });
    let results = futures_util::future::join_all(calls).await;
    let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    assert_eq!(created, 1, "{results:?}");
    assert!(results.iter().all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK));
    let ids: std::collections::HashSet<_> = results.iter().map(|(_, b)| b["id"].clone()).collect();
    assert_eq!(ids.len(), 1);
    let rows: i64 = sqlx::query_scalar("select count(*) from conversations").fetch_one(&app.db).await.unwrap();
    assert_eq!(rows, 1);
    let members: i64 = sqlx::query_scalar("select count(*) from conversation_members").fetch_one(&app.db).await.unwrap();
    assert_eq!(members, 2);
    let events: i64 =
        sqlx::query_scalar("select count(*) from outbox where event_type = 'conversation_created'").fetch_one(&app.db).await.unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn the_conversation_shows_the_peer_from_either_side() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let (status, from_ann) = app.post("/conversations", Some(&ann.token), json!({"peerId": bob.id})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(from_ann["peer"]["id"], bob.id.to_string());
    assert_eq!(from_ann["lastSeq"], 0);
    let (status, from_bob) = app.post("/conversations", Some(&bob.token), json!({"peerId": ann.id})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_bob["id"], from_ann["id"]);
    assert_eq!(from_bob["peer"]["name"], "Ann");
}

#[tokio::test]
async fn conversation_input_errors_have_codes() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    assert_error(
        &app.post("/conversations", Some(&ann.token), json!({"peerId": ann.id})).await,
        StatusCode::BAD_REQUEST,
        "cannot_message_self",
    );
    assert_error(
        &app.post("/conversations", Some(&ann.token), json!({"peerId": uuid::Uuid::new_v4()})).await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );
    assert_error(&app.post("/conversations", Some(&ann.token), json!({"peerId": "nope"})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.post("/conversations", None, json!({"peerId": ann.id})).await, StatusCode::UNAUTHORIZED, "unauthorized");
}
