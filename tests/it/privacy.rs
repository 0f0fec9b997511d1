//! Presence privacy: who sees a user's `lastSeenAt` and live presence, on
//! the REST profile, the look-up, `presence.subscribe` and the pushes.

use duet_common::protocol::ServerKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_error};
use crate::ws::WsClient;

/// Gives `user` a stored last-seen time, so its visibility can be seen.
async fn seen_earlier(app: &TestApp, user: &TestUser) {
    sqlx::query("update users set last_seen_at = now() - interval '1 hour' where id = $1").bind(user.id).execute(&app.db).await.unwrap();
}

/// Whether `viewer` sees `target`'s `lastSeenAt`, asserting that the profile
/// and the look-up agree.
async fn sees_last_seen(app: &TestApp, viewer: &TestUser, target: &TestUser) -> bool {
    let (status, profile) = app.get(&format!("/users/{}", target.id), Some(&viewer.token)).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    let (status, found) = app.get(&format!("/users/lookup?email={}", target.email), Some(&viewer.token)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(profile, found, "the profile and the look-up show the same");
    profile.get("lastSeenAt").is_some()
}

#[tokio::test]
async fn presence_visibility_is_contacts_by_default_and_can_be_changed() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let (status, body) = app.get("/me/privacy", Some(&ann.token)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"presence": "contacts"})));
    app.set_presence_visibility(&ann, "nobody").await;
    let (_, body) = app.get("/me/privacy", Some(&ann.token)).await;
    assert_eq!(body, json!({"presence": "nobody"}));

    assert_error(&app.post("/me/privacy", Some(&ann.token), json!({"presence": "friends"})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.post("/me/privacy", Some(&ann.token), json!({})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.post("/me/privacy", None, json!({"presence": "everyone"})).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let (_, body) = app.get("/me/privacy", Some(&ann.token)).await;
    assert_eq!(body, json!({"presence": "nobody"}), "refused changes change nothing");
}

#[tokio::test]
async fn last_seen_follows_the_setting_contacts_are_whom_one_messaged_and_hiding_is_reciprocal() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await; // Ann has messaged Bob: her contact
    let cat = app.register("Cat").await; // opened a conversation with Ann and wrote to her: not her contact
    let dan = app.register("Dan").await; // a stranger
    let with_bob = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, with_bob, "hi Bob").await;
    let with_cat = app.conversation(&cat, &ann).await;
    app.send_ok(&cat, with_cat, "hi Ann").await;
    seen_earlier(&app, &ann).await;

    // contacts (the default)
    assert!(sees_last_seen(&app, &bob, &ann).await);
    assert!(!sees_last_seen(&app, &cat, &ann).await, "opening a conversation and writing does not make one a contact");
    assert!(!sees_last_seen(&app, &dan, &ann).await);
    assert!(sees_last_seen(&app, &ann, &ann).await, "one's own");

    app.set_presence_visibility(&ann, "everyone").await;
    for viewer in [&bob, &cat, &dan] {
        assert!(sees_last_seen(&app, viewer, &ann).await, "{viewer:?}");
    }

    app.set_presence_visibility(&ann, "nobody").await;
    for viewer in [&bob, &cat, &dan] {
        assert!(!sees_last_seen(&app, viewer, &ann).await, "{viewer:?}");
    }

    // Reciprocal: who hides theirs sees no one's.
    app.set_presence_visibility(&ann, "everyone").await;
    app.set_presence_visibility(&dan, "nobody").await;
    assert!(!sees_last_seen(&app, &dan, &ann).await);
    app.set_presence_visibility(&dan, "contacts").await;
    assert!(sees_last_seen(&app, &dan, &ann).await);
}

/// Reads `client`'s frames until one of `kind` matching `pred`, and returns
/// every presence update about `about` that came before it.
async fn presence_before(client: &mut WsClient, about: &TestUser, kind: ServerKind, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let (got, data) = client.recv().await;
        if got == kind.as_str() && pred(&data) {
            return seen;
        }
        if got == ServerKind::PresenceUpdate.as_str() && data["userId"] == about.id.to_string() {
            seen.push(data);
        }
    }
}

/// `viewer`'s `presence.subscribe` answer for `target`.
async fn subscribed_status(viewer: &mut WsClient, target: &TestUser) -> String {
    let id = viewer.presence_subscribe(&[target.id]).await;
    let update = viewer.next_matching(ServerKind::PresenceUpdate, |u| u["ref"] == id.as_str()).await;
    update["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn live_presence_reaches_contacts_only_and_follows_a_changed_setting_at_once() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let with_bob = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, with_bob, "hi Bob").await;
    let with_cat = app.conversation(&cat, &ann).await;
    app.send_ok(&cat, with_cat, "hi Ann").await;
    let mut b = WsClient::connect(&app, &bob).await;
    let mut c = WsClient::connect(&app, &cat).await;

    let mut a = WsClient::connect(&app, &ann).await;
    let online = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(online["status"], "online", "Bob is Ann's contact");
    // Ann's typing reaches Cat after anything her coming online sent him.
    a.typing(with_cat, "start").await;
    let pushed = presence_before(&mut c, &ann, ServerKind::Typing, |t| t["userId"] == ann.id.to_string()).await;
    assert_eq!(pushed, Vec::<Value>::new(), "Cat is not Ann's contact");
    assert_eq!(subscribed_status(&mut b, &ann).await, "online");
    assert_eq!(subscribed_status(&mut c, &ann).await, "unknown", "hidden reads as unknown, not as a setting");

    // Everyone: Cat is told at once.
    app.set_presence_visibility(&ann, "everyone").await;
    for viewer in [&mut b, &mut c] {
        let told = viewer.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
        assert_eq!(told["status"], "online");
    }
    assert_eq!(subscribed_status(&mut c, &ann).await, "online");

    // Nobody: both are told, and her going offline reaches no one.
    app.set_presence_visibility(&ann, "nobody").await;
    for viewer in [&mut b, &mut c] {
        let told = viewer.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
        assert_eq!(told["status"], "unknown");
    }
    a.close().await;
    let mut a = WsClient::connect(&app, &ann).await;
    a.typing(with_bob, "start").await;
    let pushed = presence_before(&mut b, &ann, ServerKind::Typing, |t| t["userId"] == ann.id.to_string()).await;
    assert_eq!(pushed, Vec::<Value>::new(), "neither offline nor online again reaches Bob");
    assert_eq!(subscribed_status(&mut b, &ann).await, "unknown");

    // Reciprocal: Bob hides his, and no longer sees Ann's though she shows it to everyone.
    app.set_presence_visibility(&ann, "everyone").await;
    let told = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(told["status"], "online");
    app.set_presence_visibility(&bob, "nobody").await;
    let told = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(told["status"], "unknown", "Bob is told he no longer sees Ann");
    assert_eq!(subscribed_status(&mut b, &ann).await, "unknown");
}
