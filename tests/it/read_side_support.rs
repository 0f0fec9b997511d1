//! Helpers for the read-side tests: a second context on a test's database
//! and Redis prefix, waiting for the projector, and a scripted workload.

use duet_common::ids::ConversationId;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use duet_common::events::{DomainEvent, Envelope};
use duet_common::{AppContext, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser};

/// A context on the same database and Redis prefix as `app`.
pub async fn context_of(settings: &Settings) -> AppContext {
    AppContext::build(settings.clone()).await.expect("a context on the test's database")
}

/// Polls `probe` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every committed event has been applied to the projections.
pub async fn caught_up(ctx: &AppContext) {
    eventually("the projector to catch up", Duration::from_secs(20), || async {
        let ready = duet_common::read_model::is_ready(ctx).await.unwrap_or(false);
        let lag = duet_projector::metrics::measure(ctx).await.ok()?;
        (ready && lag.events_behind == 0).then_some(())
    })
    .await
}

pub async fn mark(app: &TestApp, user: &TestUser, conversation: ConversationId, what: &str, seq: i64) {
    let (status, body) = app.post(&format!("/conversations/{conversation}/{what}"), Some(&user.token), json!({"seq": seq})).await;
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
}

/// Three users, three conversations, sends, deliveries and reads.
pub struct Script {
    pub ann: TestUser,
    pub bob: TestUser,
    pub cat: TestUser,
    pub ab: ConversationId,
    pub ac: ConversationId,
    pub bc: ConversationId,
}

pub async fn run_script(app: &TestApp) -> Script {
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let ab = app.conversation(&ann, &bob).await;
    let ac = app.conversation(&cat, &ann).await;
    let bc = app.conversation(&bob, &cat).await;
    for text in ["ab 1", "ab 2", "ab 3"] {
        app.send_ok(&ann, ab, text).await;
    }
    app.send_ok(&cat, ac, "ac 1").await;
    app.send_ok(&cat, ac, "ac 2").await;
    app.send_ok(&bob, bc, "bc 1").await;
    mark(app, &bob, ab, "delivered", 3).await;
    mark(app, &bob, ab, "read", 2).await;
    mark(app, &ann, ac, "read", 2).await;
    app.send_ok(&cat, ac, "ac 3").await;
    Script { ann, bob, cat, ab, ac, bc }
}

/// Runs the script and waits for its projections: the script, a context and
/// the live projections.
pub async fn projected_script(app: &TestApp) -> (Script, AppContext, BTreeMap<String, String>) {
    let script = run_script(app).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    let live = duet_common::read_model::dump(&ctx).await.unwrap();
    assert!(!live.is_empty());
    (script, ctx, live)
}

/// Every event in the outbox, oldest first.
pub async fn outbox_events(app: &TestApp) -> Vec<DomainEvent> {
    let payloads: Vec<Value> = sqlx::query_scalar("select payload from outbox order by id").fetch_all(&app.db).await.unwrap();
    payloads.into_iter().map(|p| serde_json::from_value::<Envelope>(p).unwrap().event).collect()
}

/// The parts of a list a person would check, in order:
/// (peer name, last text, lastSeq, unread, lastRead, lastDelivered, peerLastRead, peerLastDelivered).
pub type Line = (String, String, i64, i64, i64, i64, i64, i64);

pub fn lines(page: &Value) -> Vec<Line> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            (
                c["peer"]["name"].as_str().unwrap().to_owned(),
                c["lastMessage"]["text"].as_str().unwrap_or("").to_owned(),
                c["lastSeq"].as_i64().unwrap(),
                c["unreadCount"].as_i64().unwrap(),
                c["lastReadSeq"].as_i64().unwrap(),
                c["lastDeliveredSeq"].as_i64().unwrap(),
                c["peerLastReadSeq"].as_i64().unwrap(),
                c["peerLastDeliveredSeq"].as_i64().unwrap(),
            )
        })
        .collect()
}

pub fn line(name: &str, text: &str, seqs: [i64; 6]) -> Line {
    (name.into(), text.into(), seqs[0], seqs[1], seqs[2], seqs[3], seqs[4], seqs[5])
}

/// What the script must produce, per user.
pub fn expected(script_user: &str) -> Vec<Line> {
    match script_user {
        // ac's last message is the newest activity of all.
        "ann" => vec![line("Cat", "ac 3", [3, 1, 2, 2, 0, 0]), line("Bob", "ab 3", [3, 0, 0, 0, 2, 3])],
        "bob" => vec![line("Cat", "bc 1", [1, 0, 0, 0, 0, 0]), line("Ann", "ab 3", [3, 1, 2, 3, 0, 0])],
        "cat" => vec![line("Ann", "ac 3", [3, 0, 0, 0, 2, 2]), line("Bob", "bc 1", [1, 1, 0, 0, 0, 0])],
        other => panic!("no such user {other}"),
    }
}

pub async fn list(app: &TestApp, user: &TestUser) -> Value {
    let (status, page) = app.get("/conversations", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}
