//! Paging through a conversation list with cursors: every page comes from
//! the Redis projection, and the pages together hold each conversation once,
//! newest activity first.

use duet_common::ids::ConversationId;
use duet_common::read_model::{self as read, Position};
use reqwest::StatusCode;

use crate::helpers::{TestApp, TestUser};
use crate::read_side_support::{caught_up, context_of};

/// Ann and `n` peers, one conversation each, each peer sending once in turn;
/// returns Ann and the conversations, newest activity first.
async fn ann_with_conversations(app: &TestApp, n: usize) -> (TestUser, Vec<ConversationId>) {
    let ann = app.register("Ann").await;
    let mut conversations = Vec::new();
    for i in 0..n {
        let peer = app.register(&format!("Peer{i}")).await;
        let conversation = app.conversation(&ann, &peer).await;
        app.send_ok(&peer, conversation, &format!("m{i}")).await;
        conversations.push(conversation);
    }
    conversations.reverse();
    (ann, conversations)
}

#[tokio::test]
async fn cursor_pages_of_the_list_come_from_the_projection_and_hold_each_conversation_once_in_order() {
    let app = TestApp::spawn().await;
    let (ann, newest_first) = ann_with_conversations(&app, 5).await;
    caught_up(&context_of(&app.settings).await).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/conversations?limit=2&cursor={c}"),
            None => "/conversations?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path, Some(&ann.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().parse::<ConversationId>().unwrap()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);
    let metrics = app.metrics().await;
    assert!(metrics.contains("duet_query_conversation_lists_total{source=\"redis\"} 3"), "{metrics}");
    assert!(!metrics.contains("source=\"postgres_redis_down\""), "{metrics}");
}

#[tokio::test]
async fn the_projection_reads_the_page_after_a_cursor() {
    let app = TestApp::spawn().await;
    let (ann, newest_first) = ann_with_conversations(&app, 4).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;

    let (first, more) = read::list(&ctx, ann.id, None, 2).await.unwrap();
    assert!(more);
    let last = first.last().unwrap();
    let after = Position { updated_micros: last.updated_at.timestamp_micros(), conversation_id: last.conversation_id };
    let (second, more) = read::list(&ctx, ann.id, Some(after), 2).await.expect("a page after a cursor");
    assert!(!more);
    let ids: Vec<ConversationId> = first.iter().chain(&second).map(|e| e.conversation_id).collect();
    assert_eq!(ids, newest_first);
}
