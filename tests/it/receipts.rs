use reqwest::StatusCode;
use serde_json::json;

use duet_common::events::{DomainEvent, Envelope};

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn markers_move_forward_only_and_read_implies_delivered() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    for i in 0..5 {
        app.send_ok(&ann, conversation, &format!("m{i}")).await;
    }
    let mark = |what: &'static str, seq: i64| {
        let app = &app;
        let bob = &bob;
        async move { app.post(&format!("/conversations/{conversation}/{what}"), Some(&bob.token), json!({"seq": seq})).await }
    };
    let (status, m) = mark("delivered", 4).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!((m["lastDeliveredSeq"].as_i64(), m["lastReadSeq"].as_i64()), (Some(4), Some(0)));
    let (_, m) = mark("delivered", 2).await;
    assert_eq!(m["lastDeliveredSeq"], 4, "a lower seq is a no-op");
    let (_, m) = mark("read", 3).await;
    assert_eq!((m["lastDeliveredSeq"].as_i64(), m["lastReadSeq"].as_i64()), (Some(4), Some(3)));
    let (_, m) = mark("read", 5).await;
    assert_eq!((m["lastDeliveredSeq"].as_i64(), m["lastReadSeq"].as_i64()), (Some(5), Some(5)), "read implies delivered");
    let (_, m) = mark("read", 1).await;
    assert_eq!(m["lastReadSeq"], 5);

    assert_error(&mark("read", 6).await, StatusCode::BAD_REQUEST, "seq_out_of_range");
    assert_error(&mark("delivered", -1).await, StatusCode::BAD_REQUEST, "bad_request");

    let stored = app.stored_markers(conversation, &bob).await;
    assert_eq!(stored, (5, 5));
    // One event per forward move, none for the no-ops.
    let events: Vec<(String, i64)> = sqlx::query_as(
        "select event_type, (payload->>'seq')::int8 from outbox where event_type in ('delivered_up_to', 'read_up_to') order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let expected = [("delivered_up_to", 4), ("read_up_to", 3), ("delivered_up_to", 5), ("read_up_to", 5)];
    assert_eq!(events, expected.map(|(t, s)| (t.to_owned(), s)).to_vec());

    // PostgreSQL's `duet_receipts` writes the events; they must be exactly
    // what the Rust `Envelope` encodes.
    let payloads: Vec<serde_json::Value> =
        sqlx::query_scalar("select payload from outbox where event_type in ('delivered_up_to', 'read_up_to') order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    for payload in payloads {
        let envelope: Envelope = serde_json::from_value(payload.clone()).unwrap();
        let (DomainEvent::DeliveredUpTo { conversation_id: c, user_id: u, .. }
        | DomainEvent::ReadUpTo { conversation_id: c, user_id: u, .. }) = &envelope.event
        else {
            panic!("a marker event: {payload}");
        };
        assert_eq!((*c, *u), (conversation, bob.id));
        assert_eq!(serde_json::to_value(&envelope).unwrap(), payload);
    }
}

#[tokio::test]
async fn concurrent_receipts_never_move_a_marker_backwards() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    for i in 0..30 {
        app.send_ok(&ann, conversation, &format!("m{i}")).await;
    }
    let marks = (1..=30).rev().map(|seq| {
        let what = if seq % 3 == 0 { "read" } else { "delivered" };
        let (app, bob) = (&app, &bob);
        async move { app.post(&format!("/conversations/{conversation}/{what}"), Some(&bob.token), json!({"seq": seq})).await }
    });
    for (status, body) in futures_util::future::join_all(marks).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let stored = app.stored_markers(conversation, &bob).await;
    assert_eq!(stored, (30, 30));
}

#[tokio::test]
async fn a_refused_receipt_in_a_busy_moment_fails_alone() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let eve = app.register("Eve").await;
    let conversation = app.conversation(&ann, &bob).await;
    for i in 0..10 {
        app.send_ok(&ann, conversation, &format!("m{i}")).await;
    }
    let calls = (1..=10).flat_map(|seq| [(bob.clone(), seq), (eve.clone(), seq), (bob.clone(), seq + 100)]);
    let results =
        futures_util::future::join_all(calls.map(|(who, seq)| {
            let app = &app;
            async move {
                (who.id, seq, app.post(&format!("/conversations/{conversation}/delivered"), Some(&who.token), json!({"seq": seq})).await)
            }
        }))
        .await;
    for (who, seq, response) in results {
        if who == eve.id {
            assert_error(&response, StatusCode::NOT_FOUND, "conversation_not_found");
        } else if seq > 10 {
            assert_error(&response, StatusCode::BAD_REQUEST, "seq_out_of_range");
        } else {
            assert_eq!(response.0, StatusCode::OK, "{}", response.1);
        }
    }
    assert_eq!(app.stored_markers(conversation, &bob).await.0, 10);
}
