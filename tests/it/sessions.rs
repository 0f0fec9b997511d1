//! Sessions that can be revoked: rotating refresh tokens (and their reuse),
//! logout, log out everywhere, password change, and signing-key rotation;
//! each revocation reaching REST within the session cache's TTL and open
//! WebSockets on every node (close 4401).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::claims_of;
use crate::helpers::{PASSWORD, TestApp, TestUser, assert_error};
use crate::read_side_support::eventually;
use crate::ws::WsClient;

/// Longer than `DUET_SESSION_CACHE_MS` (5 s by default): the bound on a revoked token's life on REST.
const REVOCATION_BOUND: Duration = Duration::from_secs(8);

async fn refresh(app: &TestApp, refresh_token: &str) -> (StatusCode, Value) {
    app.post("/auth/refresh", None, json!({"refreshToken": refresh_token})).await
}

async fn login(app: &TestApp, user: &TestUser, password: &str) -> TestUser {
    let (status, body) = app.post("/auth/login", None, json!({"email": user.email, "password": password})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    TestUser { token: body["token"].as_str().unwrap().into(), refresh_token: body["refreshToken"].as_str().unwrap().into(), ..user.clone() }
}

/// Polls `GET /me` with `token` on `app` until it is refused as a revoked session.
async fn refused_on_rest(app: &TestApp, token: &str) {
    eventually("the token to be refused on REST", REVOCATION_BOUND, || async {
        let (status, body) = app.get("/me", Some(token)).await;
        (status == StatusCode::UNAUTHORIZED).then(|| assert_eq!(body["code"], "session_revoked", "{body}"))
    })
    .await
}

async fn closed_4401(ws: &mut WsClient) {
    let (_, close) = ws.drain_until_gone().await;
    assert_eq!(close, Some(4401));
}

#[tokio::test]
async fn register_and_login_return_a_short_lived_token_and_a_refresh_token() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let (status, body) = app.post("/auth/login", None, json!({"email": ann.email, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expiresIn"], 900, "access tokens live 15 minutes by default");
    assert_eq!(body["refreshExpiresIn"], 30 * 86_400);
    let claims = claims_of(body["token"].as_str().unwrap());
    assert_ne!(claims["sid"], claims_of(&ann.token)["sid"], "each sign-in is its own session");
    assert_ne!(body["refreshToken"], ann.refresh_token.as_str());
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("select hash from refresh_tokens").fetch_all(&app.db).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|h| h.len() == 32 && *h != ann.refresh_token.as_bytes()), "stored hashed");
}

#[tokio::test]
async fn a_refresh_rotates_both_tokens_and_spends_the_old_refresh_token() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let (status, first) = refresh(&app, &ann.refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["user"]["id"], ann.id.to_string());
    let token = first["token"].as_str().unwrap();
    assert_eq!(claims_of(token)["sid"], claims_of(&ann.token)["sid"], "same session");
    assert_ne!(first["refreshToken"], ann.refresh_token.as_str());
    assert_eq!(app.get("/me", Some(token)).await.0, StatusCode::OK);
    let (status, second) = refresh(&app, first["refreshToken"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_error(&refresh(&app, "not-a-refresh-token").await, StatusCode::UNAUTHORIZED, "invalid_refresh_token");
}

#[tokio::test]
async fn reuse_of_a_spent_refresh_token_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let other = login(&app, &ann, PASSWORD).await;
    let (_, rotated) = refresh(&app, &ann.refresh_token).await;
    let mut ws = WsClient::connect(&app, &TestUser { token: rotated["token"].as_str().unwrap().into(), ..ann.clone() }).await;

    // The thief (or the victim) presents the spent token.
    assert_error(&refresh(&app, &ann.refresh_token).await, StatusCode::UNAUTHORIZED, "refresh_token_reused");
    // The newer refresh token of the family is dead too, and so are its access tokens.
    assert_error(&refresh(&app, rotated["refreshToken"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED, "session_revoked");
    refused_on_rest(&app, rotated["token"].as_str().unwrap()).await;
    refused_on_rest(&app, &ann.token).await;
    closed_4401(&mut ws).await;
    // Another sign-in of the same user is untouched.
    assert_eq!(app.get("/me", Some(&other.token)).await.0, StatusCode::OK);
    assert_eq!(refresh(&app, &other.refresh_token).await.0, StatusCode::OK);
    let reason: String = sqlx::query_scalar("select revoked_reason from auth_sessions where id = $1")
        .bind(uuid::Uuid::parse_str(claims_of(&ann.token)["sid"].as_str().unwrap()).unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(reason, "refresh_token_reused");
}

#[tokio::test]
async fn logout_ends_the_session_on_every_node_and_closes_its_websocket() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer().await;
    let ann = a.register("Ann").await;
    let phone = login(&a, &ann, PASSWORD).await;
    let mut laptop_ws = WsClient::connect(&a, &ann).await;
    let mut phone_ws = WsClient::connect(&b, &phone).await;
    // Node b knows the session as active (cached) before the logout.
    assert_eq!(b.get("/me", Some(&ann.token)).await.0, StatusCode::OK);

    let (status, body) = a.post("/auth/logout", Some(&ann.token), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_error(&a.get("/me", Some(&ann.token)).await, StatusCode::UNAUTHORIZED, "session_revoked");
    refused_on_rest(&b, &ann.token).await;
    assert_error(&refresh(&a, &ann.refresh_token).await, StatusCode::UNAUTHORIZED, "session_revoked");
    closed_4401(&mut laptop_ws).await;
    // The phone's session goes on, on REST and on its WebSocket.
    assert_eq!(b.get("/me", Some(&phone.token)).await.0, StatusCode::OK);
    phone_ws.ping().await;
}

#[tokio::test]
async fn logout_all_closes_every_websocket_on_two_nodes() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer().await;
    let ann = a.register("Ann").await;
    let phone = login(&b, &ann, PASSWORD).await;
    let mut on_a = WsClient::connect(&a, &ann).await;
    let mut on_b = WsClient::connect(&b, &phone).await;
    let (status, _) = b.post("/auth/logout-all", Some(&phone.token), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    closed_4401(&mut on_a).await;
    closed_4401(&mut on_b).await;
    refused_on_rest(&a, &ann.token).await;
    refused_on_rest(&a, &phone.token).await;
    assert_error(&refresh(&a, &phone.refresh_token).await, StatusCode::UNAUTHORIZED, "session_revoked");
}

#[tokio::test]
async fn a_password_change_ends_every_session_and_starts_one_for_the_caller() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer().await;
    let ann = a.register("Ann").await;
    let phone = login(&b, &ann, PASSWORD).await;
    let mut on_a = WsClient::connect(&a, &ann).await;
    let mut on_b = WsClient::connect(&b, &phone).await;

    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    assert_error(
        &a.post("/auth/password", Some(&ann.token), change("wrong one", "violet canyon ledger 93")).await,
        StatusCode::FORBIDDEN,
        "wrong_password",
    );
    assert_error(&a.post("/auth/password", Some(&ann.token), change(PASSWORD, "short")).await, StatusCode::BAD_REQUEST, "bad_request");
    let (status, fresh) = a.post("/auth/password", Some(&ann.token), change(PASSWORD, "violet canyon ledger 93")).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    closed_4401(&mut on_a).await;
    closed_4401(&mut on_b).await;
    refused_on_rest(&b, &phone.token).await;
    refused_on_rest(&a, &ann.token).await;

    let fresh_user = TestUser { token: fresh["token"].as_str().unwrap().into(), ..ann.clone() };
    assert_eq!(a.get("/me", Some(&fresh_user.token)).await.0, StatusCode::OK);
    WsClient::connect(&b, &fresh_user).await.ping().await;
    assert_eq!(refresh(&a, fresh["refreshToken"].as_str().unwrap()).await.0, StatusCode::OK);
    let old = a.post("/auth/login", None, json!({"email": ann.email, "password": PASSWORD})).await;
    assert_error(&old, StatusCode::UNAUTHORIZED, "unauthorized");
    login(&a, &ann, "violet canyon ledger 93").await;
}

/// Pub/Sub may lose the revocation (Redis down): the gateway re-reads the session itself.
#[tokio::test]
async fn a_websocket_whose_session_was_revoked_without_a_publish_is_closed_by_its_recheck() {
    let app = TestApp::spawn_with(|s| s.session_recheck_secs = 1).await;
    let ann = app.register("Ann").await;
    let mut ws = WsClient::connect(&app, &ann).await;
    ws.keep_alive(Duration::from_millis(300));
    sqlx::query("update auth_sessions set revoked_at = now(), revoked_reason = 'logout'").execute(&app.db).await.unwrap();
    closed_4401(&mut ws).await;
}

fn keys(list: &[(&str, &str)]) -> Option<String> {
    Some(list.iter().map(|(kid, secret)| format!("{kid}:{secret}")).collect::<Vec<_>>().join(","))
}

#[tokio::test]
async fn signing_keys_rotate_without_refusing_tokens_of_a_configured_key() {
    let (old, new) = ("o".repeat(32), "n".repeat(32));
    let before = TestApp::spawn_with(|s| {
        s.jwt_secret = None;
        s.jwt_keys = keys(&[("k1", &old)]);
    })
    .await;
    let ann = before.register("Ann").await;
    assert_eq!(claims_header_kid(&ann.token), "k1");

    // A node with both keys signs with the newest and accepts both.
    let mut both = before.settings.clone();
    both.jwt_keys = keys(&[("k1", &old), ("k2", &new)]);
    both.http_addr = "127.0.0.1:0".parse().unwrap();
    let rotated = TestApp::spawn_settings(both, duet::Service::ALL).await;
    assert_eq!(rotated.get("/me", Some(&ann.token)).await.0, StatusCode::OK, "a token of the old key still works");
    let fresh = login(&rotated, &ann, PASSWORD).await;
    assert_eq!(claims_header_kid(&fresh.token), "k2");
    let (_, refreshed) = refresh(&rotated, &ann.refresh_token).await;
    assert_eq!(claims_header_kid(refreshed["token"].as_str().unwrap()), "k2", "a refresh moves to the new key");

    // Once the old key is retired, its tokens are refused.
    let mut only_new = before.settings.clone();
    only_new.jwt_keys = keys(&[("k2", &new)]);
    only_new.http_addr = "127.0.0.1:0".parse().unwrap();
    let retired = TestApp::spawn_settings(only_new, duet::Service::ALL).await;
    assert_error(&retired.get("/me", Some(&ann.token)).await, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(retired.get("/me", Some(&fresh.token)).await.0, StatusCode::OK);
}

fn claims_header_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}
