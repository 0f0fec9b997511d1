use duet_common::ids::ConversationId;
use std::collections::HashSet;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use duet_common::domain::Message;
use duet_common::events::{DomainEvent, Envelope};

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn a_sent_message_is_stored_with_seq_and_an_outbox_event() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let (status, message) = app.send(&ann, conversation, "c-1", "  hello Bob  ").await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["text"], "hello Bob");
    assert_eq!(message["type"], "text");
    assert_eq!(message["senderId"], ann.id.to_string());
    assert_eq!(message["receiverId"], bob.id.to_string());
    assert_eq!(message["conversationId"], conversation.to_string());
    assert_eq!(message["clientMsgId"], "c-1");

    let (status, location) = app
        .post(
            &format!("/conversations/{conversation}/messages"),
            Some(&bob.token),
            json!({"clientMsgId": "c-2", "type": "location", "text": "caption", "payload": {"lat": 48.85, "w": 640, "nested": [1, null, "z"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{location}");
    assert_eq!(location["seq"], 2);

    // PostgreSQL's `duet_append` writes the event; it must read as the
    // Rust `Envelope` (which omits an absent `text` or `payload` that SQL writes as null).
    let events: Vec<serde_json::Value> = sqlx::query_scalar("select payload from outbox where event_type = 'message_appended' order by id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    for (event, sent) in events.iter().zip([&message, &location]) {
        let stored: Message = serde_json::from_value(sent.clone()).unwrap();
        let expected = Envelope::from(DomainEvent::MessageAppended { message: stored });
        assert_eq!(serde_json::from_value::<Envelope>(event.clone()).unwrap(), expected);
        assert_eq!(event["version"], 1);
        assert_eq!(&without_nulls(event["message"].clone()), sent);
    }
    let last_seq: i64 =
        sqlx::query_scalar("select last_seq from conversations where id = $1").bind(conversation).fetch_one(&app.db).await.unwrap();
    assert_eq!(last_seq, 2);
}

#[tokio::test]
async fn fifty_concurrent_sends_of_one_client_msg_id_store_one_message() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let sends = (0..50).map(|_| app.send(&ann, conversation, "same-id", "once"));
    let results = futures_util::future::join_all(sends).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{results:?}");
    assert!(results.iter().all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK), "{results:?}");
    let answers: HashSet<(String, i64)> =
        results.iter().map(|(_, m)| (m["id"].as_str().unwrap().to_owned(), m["seq"].as_i64().unwrap())).collect();
    assert_eq!(answers.len(), 1, "every caller gets the same message: {answers:?}");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 1);
    let events: i64 =
        sqlx::query_scalar("select count(*) from outbox where event_type = 'message_appended'").fetch_one(&app.db).await.unwrap();
    assert_eq!(events, 1);
}

/// A metric's value in the Prometheus text of `app`.
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.metrics().await;
    text.lines().find_map(|l| l.strip_prefix(series)).map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn repeated_client_msg_ids_in_one_batch_settle_to_the_first_without_a_split() {
    // One writer: concurrent sends queue behind its batch and share the next.
    let app = TestApp::spawn_with(|s| s.append_writers = 1).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut round = 0;
    // Until some batch held more than one send (then they were repeats of one id).
    while metric(&app, r#"duet_batch_size_sum{batcher="append"} "#).await
        <= metric(&app, r#"duet_batch_size_count{batcher="append"} "#).await
    {
        round += 1;
        assert!(round <= 20, "no batch ever held two sends");
        let id = format!("retry-{round}");
        let sends = (0..12).map(|i| app.send(&ann, conversation, &id, if i == 11 { "other content" } else { "stored once" }));
        let results = futures_util::future::join_all(sends).await;
        let (same, other) = results.split_at(11);
        let answers: HashSet<(String, i64, String)> = same
            .iter()
            .filter(|(s, _)| s.is_success())
            .map(|(_, m)| (m["id"].as_str().unwrap().to_owned(), m["seq"].as_i64().unwrap(), m["text"].as_str().unwrap().to_owned()))
            .collect();
        // The send with other content may have come first; then the others conflict with it.
        if other[0].0 == StatusCode::CONFLICT {
            assert_eq!(same.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{results:?}");
            assert!(same.iter().all(|(s, _)| s.is_success()), "{results:?}");
            assert_eq!(answers.len(), 1, "every retry gets the first one's message: {answers:?}");
            assert_eq!(answers.iter().next().unwrap().1, round, "one message per round, in order");
        } else {
            assert_eq!(other[0].0, StatusCode::CREATED, "{results:?}");
            assert!(same.iter().all(|(s, _)| *s == StatusCode::CONFLICT), "{results:?}");
        }
    }
    assert_eq!(metric(&app, r#"duet_batch_splits_total{batcher="append"} "#).await, 0.0, "no batch fell back to one transaction per send");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, round);
}

#[tokio::test]
async fn a_retry_returns_the_original_and_a_reuse_with_other_content_is_a_conflict() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let (_, first) = app.send(&ann, conversation, "c-1", "hello").await;
    let (status, retry) = app.send(&ann, conversation, "c-1", "hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retry, first);

    let conflict = app.send(&ann, conversation, "c-1", "something else").await;
    assert_error(&conflict, StatusCode::CONFLICT, "idempotency_conflict");
    let id = first["id"].as_str().unwrap();
    assert!(conflict.1["message"].as_str().unwrap().contains(id), "the conflict names the original: {}", conflict.1);

    // The same id from another sender is that sender's own message.
    let (status, bobs) = app.send(&bob, conversation, "c-1", "hello").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(bobs["seq"], 2);
}

#[tokio::test]
async fn two_users_sending_500_each_concurrently_get_seqs_1_to_1000() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let jobs = (0..1000).map(|i| {
        let from = if i % 2 == 0 { &ann } else { &bob };
        let app = &app;
        async move {
            let (status, m) = app.send(from, conversation, &format!("m-{i}"), &format!("message {i}")).await;
            assert_eq!(status, StatusCode::CREATED, "{m}");
            m["seq"].as_i64().unwrap()
        }
    });
    let mut seqs: Vec<i64> = futures_util::stream::iter(jobs).buffer_unordered(64).collect().await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    let stored: Vec<i64> = sqlx::query_scalar("select seq from messages where conversation_id = $1 order by seq")
        .bind(conversation)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, (1..=1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failing_append_stores_nothing_and_fails_alone() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    // A fault in the outbox write, for one message only.
    sqlx::raw_sql(
        "create function reject_poison() returns trigger language plpgsql as $$ \
         begin if new.payload->'message'->>'text' = 'poison' then raise exception 'injected fault'; end if; return new; end $$; \
         create trigger outbox_poison before insert on outbox for each row execute function reject_poison();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let sends = (0..20).map(|i| {
        let text = if i == 7 { "poison".to_owned() } else { format!("fine {i}") };
        let app = &app;
        let ann = &ann;
        async move { (i, app.send(ann, conversation, &format!("m-{i}"), &text).await) }
    });
    let results = futures_util::future::join_all(sends).await;
    for (i, (status, body)) in &results {
        if *i == 7 {
            assert_error(&(*status, body.clone()), StatusCode::INTERNAL_SERVER_ERROR, "internal");
        } else {
            assert_eq!(*status, StatusCode::CREATED, "message {i}: {body}");
        }
    }
    let texts: Vec<String> = sqlx::query_scalar("select text from messages order by seq").fetch_all(&app.db).await.unwrap();
    assert_eq!(texts.len(), 19);
    assert!(!texts.contains(&"poison".to_owned()));
    let seqs: Vec<i64> = sqlx::query_scalar("select seq from messages order by seq").fetch_all(&app.db).await.unwrap();
    assert_eq!(seqs, (1..=19).collect::<Vec<_>>(), "no gap left by the failed append");
    let events: i64 =
        sqlx::query_scalar("select count(*) from outbox where event_type = 'message_appended'").fetch_one(&app.db).await.unwrap();
    assert_eq!(events, 19);
}

#[tokio::test]
async fn message_input_errors_have_codes_and_store_nothing() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let path = format!("/conversations/{conversation}/messages");
    let cases = [
        // Bounds the document declares are checked before the handler runs.
        (json!({"clientMsgId": "a", "text": ""}), "bad_request"),
        (json!({"clientMsgId": "a", "text": "x".repeat(4001)}), "bad_request"),
        (json!({"clientMsgId": "", "text": "hi"}), "bad_request"),
        (json!({"clientMsgId": "has space", "text": "hi"}), "bad_request"),
        (json!({"clientMsgId": "x".repeat(65), "text": "hi"}), "bad_request"),
        // The rest are the handler's.
        (json!({"clientMsgId": "a", "text": "   \n "}), "text_empty"),
        (json!({"clientMsgId": "a", "text": "nul\u{0}inside"}), "invalid_text"),
        (json!({"clientMsgId": "a"}), "text_required"),
        (json!({"clientMsgId": "a", "text": "hi", "type": "image"}), "invalid_payload"),
        (json!({"clientMsgId": "a", "text": "hi", "payload": {"x": 1}}), "invalid_payload"),
        (json!({"clientMsgId": "a", "text": "hi", "type": "sticker"}), "bad_request"),
        (json!({"text": "hi"}), "bad_request"),
        (json!({"clientMsgId": ["a"], "text": "hi"}), "bad_request"),
    ];
    for (body, code) in cases {
        assert_error(&app.post(&path, Some(&ann.token), body).await, StatusCode::BAD_REQUEST, code);
    }
    // 4000 characters (not bytes) is the limit.
    let (status, _) = app.send(&ann, conversation, "max", &"é".repeat(4000)).await;
    assert_eq!(status, StatusCode::CREATED);
    // A non-text message with a free payload (attachment types name an upload: tests/it/attachments).
    let (status, location) = app
        .post(
            &path,
            Some(&ann.token),
            json!({"clientMsgId": "loc", "type": "location", "payload": {"lat": 48.85, "lng": 2.29}, "text": "here"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{location}");
    assert_eq!(location["payload"]["lng"], 2.29);
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn outsiders_get_404_on_every_conversation_endpoint() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let eve = app.register("Eve").await;
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "private").await;
    let unknown = ConversationId::new();
    for id in [conversation, unknown] {
        for (path, body) in [
            (format!("/conversations/{id}/messages"), json!({"clientMsgId": "e-1", "text": "hi"})),
            (format!("/conversations/{id}/delivered"), json!({"seq": 1})),
            (format!("/conversations/{id}/read"), json!({"seq": 1})),
        ] {
            assert_error(&app.post(&path, Some(&eve.token), body).await, StatusCode::NOT_FOUND, "conversation_not_found");
        }
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn sends_beyond_the_rate_limit_get_429_and_are_not_stored() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_per_sec = 1;
        s.rate_limit_burst = 3;
    })
    .await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    for i in 0..3 {
        let (status, body) = app.send(&ann, conversation, &format!("ok-{i}"), "hi").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let resp = app
        .http_raw()
        .post(app.url(&format!("/conversations/{conversation}/messages")))
        .bearer_auth(&ann.token)
        .json(&json!({"clientMsgId": "too-many", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 3);
    // Bob has his own budget.
    app.send_ok(&bob, conversation, "hi").await;
}

#[tokio::test]
async fn writers_carry_on_without_an_error_after_postgres_drops_their_connections() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    // The append writer and the receipt writer of this conversation now hold a connection each.
    app.send_ok(&ann, conversation, "before").await;
    let (status, body) = app.post(&format!("/conversations/{conversation}/delivered"), Some(&bob.token), json!({"seq": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // PostgreSQL ends every other session of the node's database, as on a
    // failover or a restart; wait until they are gone.
    let mut session = app.db.acquire().await.unwrap();
    let killed: Vec<i32> =
        sqlx::query_scalar("select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()")
            .fetch_all(&mut *session)
            .await
            .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from unnest($1::int4[]) pid").bind(&killed).execute(&mut *session).await.unwrap();
    drop(session);
    assert!(killed.len() >= 2, "the writers' connections were among them: {killed:?}");
    crate::read_side_support::eventually("the sessions to end", std::time::Duration::from_secs(10), || async {
        let alive: i64 =
            sqlx::query_scalar("select count(*) from pg_stat_activity where pid = any($1)").bind(&killed).fetch_one(&app.db).await.unwrap();
        (alive == 0).then_some(())
    })
    .await;

    // The first send and receipt after it succeed, each stored once.
    let (status, message) = app.send(&ann, conversation, "after-1", "after").await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["seq"], 2);
    let (status, body) = app.post(&format!("/conversations/{conversation}/delivered"), Some(&bob.token), json!({"seq": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stored_markers(conversation, &bob).await, (2, 0));
    let stored: i64 =
        sqlx::query_scalar("select count(*) from messages where conversation_id = $1").bind(conversation).fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 2);
}

fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect(),
        other => other,
    }
}
