//! History pagination and search (on the primary; see `replica.rs` for the replica).

use duet_common::ids::ConversationId;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_error};

/// A conversation with `n` messages, inserted in one statement.
async fn long_conversation(app: &TestApp, a: &TestUser, b: &TestUser, n: i64) -> ConversationId {
    let conversation = app.conversation(a, b).await;
    sqlx::query(
        "insert into messages (id, conversation_id, seq, sender_id, receiver_id, text, client_msg_id) \
         select gen_random_uuid(), $1, s, case when s % 2 = 0 then $2 else $3 end, case when s % 2 = 0 then $3 else $2 end, \
                'message ' || s, 'bulk-' || s \
         from generate_series(1, $4::int8) s",
    )
    .bind(conversation)
    .bind(a.id)
    .bind(b.id)
    .bind(n)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("update conversations set last_seq = $2 where id = $1").bind(conversation).bind(n).execute(&app.db).await.unwrap();
    conversation
}

fn seqs(page: &Value) -> Vec<i64> {
    page["items"].as_array().expect("items").iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn pagination_walks_a_1000_message_conversation_both_ways_without_gap_or_repeat() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = long_conversation(&app, &ann, &bob, 1000).await;
    let path = format!("/conversations/{conversation}/messages");

    // Backwards from the newest, 37 at a time.
    let mut pages: Vec<Vec<i64>> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let query = match before {
            Some(seq) => format!("{path}?limit=37&beforeSeq={seq}"),
            None => format!("{path}?limit=37"),
        };
        let (status, page) = app.get(&query, Some(&bob.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page_seqs = seqs(&page);
        assert!(page_seqs.windows(2).all(|w| w[1] == w[0] + 1), "a page is oldest first: {page_seqs:?}");
        before = page_seqs.first().copied();
        pages.push(page_seqs);
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(pages.len(), 28);
    let backwards: Vec<i64> = pages.into_iter().rev().flatten().collect();
    assert_eq!(backwards, (1..=1000).collect::<Vec<_>>());

    // Forwards from the start, at the default size.
    let mut forwards = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app.get(&format!("{path}?afterSeq={after}"), Some(&ann.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page_seqs = seqs(&page);
        assert!(page_seqs.len() <= 50);
        after = *page_seqs.last().unwrap_or(&after);
        forwards.extend(page_seqs);
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(forwards, (1..=1000).collect::<Vec<_>>());

    // A window, and the edges.
    let (_, window) = app.get(&format!("{path}?afterSeq=10&beforeSeq=15"), Some(&ann.token)).await;
    assert_eq!((seqs(&window), window["hasMore"].as_bool()), (vec![11, 12, 13, 14], Some(false)));
    let (_, past_end) = app.get(&format!("{path}?afterSeq=1000"), Some(&ann.token)).await;
    assert_eq!((seqs(&past_end), past_end["hasMore"].as_bool()), (vec![], Some(false)));
    let (_, message) = app.get(&format!("{path}?afterSeq=999"), Some(&ann.token)).await;
    assert_eq!(message["items"][0]["text"], "message 1000");
    assert_eq!(message["items"][0]["senderId"], ann.id.to_string());
}

#[tokio::test]
async fn history_refuses_bad_paging_and_outsiders() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let eve = app.register("Eve").await;
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "hello").await;
    let path = format!("/conversations/{conversation}/messages");
    let get = |query: &str| {
        let url = format!("{path}{query}");
        let (app, token) = (&app, ann.token.clone());
        async move { app.get(&url, Some(&token)).await }
    };
    // Bounds the document declares are checked before the handler runs.
    assert_error(&get("?limit=0").await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&get("?limit=101").await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&get("?beforeSeq=-1").await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&get("?minSeq=-5").await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&get("?afterSeq=5&beforeSeq=5").await, StatusCode::BAD_REQUEST, "invalid_range");
    let (status, _) = get("?limit=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&app.get(&path, Some(&eve.token)).await, StatusCode::NOT_FOUND, "conversation_not_found");
    assert_error(
        &app.get(&format!("/conversations/{}/messages", Uuid::new_v4()), Some(&ann.token)).await,
        StatusCode::NOT_FOUND,
        "conversation_not_found",
    );
    assert_error(&app.get(&path, None).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, page) = app.get(&path, Some(&bob.token)).await;
    assert_eq!((status, seqs(&page)), (StatusCode::OK, vec![1]));
}

#[tokio::test]
async fn search_finds_only_the_callers_own_messages() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let dan = app.register("Dan").await;
    let ab = app.conversation(&ann, &bob).await;
    let cd = app.conversation(&cat, &dan).await;
    app.send_ok(&ann, ab, "Pineapple pizza tonight?").await;
    app.send_ok(&bob, ab, "only if there is no pineapple").await;
    app.send_ok(&ann, ab, "something else entirely").await;
    app.send_ok(&cat, cd, "pineapple juice is great").await;

    let search = |user: &TestUser, q: &str| {
        let token = user.token.clone();
        let path = format!("/search?q={}", q.replace(' ', "%20").replace('"', "%22"));
        let app = &app;
        async move {
            let (status, body) = app.get(&path, Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["items"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    // Newest first; the other pair's message is never among them.
    assert_eq!(search(&ann, "pineapple").await, ["only if there is no pineapple", "Pineapple pizza tonight?"]);
    assert_eq!(search(&bob, "PINEAPPLE pizza").await, ["Pineapple pizza tonight?"]);
    assert_eq!(search(&dan, "pineapple").await, ["pineapple juice is great"]);
    assert_eq!(search(&cat, "pizza").await, Vec::<String>::new());
    assert_eq!(search(&ann, "pineapple -pizza").await, ["only if there is no pineapple"]);
    assert_eq!(search(&ann, "\"no pineapple\"").await, ["only if there is no pineapple"]);

    assert_error(&app.get("/search?q=%20", Some(&ann.token)).await, StatusCode::BAD_REQUEST, "invalid_query");
    assert_error(&app.get("/search?q=a%00b", Some(&ann.token)).await, StatusCode::BAD_REQUEST, "invalid_query");
    assert_error(&app.get(&format!("/search?q={}", "a".repeat(201)), Some(&ann.token)).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.get("/search?q=pineapple&limit=0", Some(&ann.token)).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.get("/search?q=pineapple", None).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = app.get("/search", Some(&ann.token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
