//! Abuse limits: login per account and per client IP with growing delays,
//! registration per IP, lookup and search per user; all across nodes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, fresh_settings};

/// One login, optionally through a trusted proxy that saw `from`; the answer and its `Retry-After`.
async fn login(app: &TestApp, email: &str, password: &str, from: Option<&str>) -> ((StatusCode, Value), Option<u64>) {
    let mut req = app.http_raw().post(app.url("/auth/login")).json(&json!({"email": email, "password": password}));
    if let Some(from) = from {
        req = req.header("x-forwarded-for", from);
    }
    let resp = req.send().await.unwrap();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let status = resp.status();
    ((status, resp.json().await.unwrap_or(Value::Null)), retry)
}

#[tokio::test]
async fn wrong_passwords_for_one_account_meet_growing_delays_with_default_settings() {
    let defaults = duet_common::Settings::from_env().unwrap();
    let app = TestApp::spawn_with(|s| {
        s.login_free_attempts = defaults.login_free_attempts;
        s.login_per_ip_per_min = defaults.login_per_ip_per_min;
    })
    .await;
    let ann = app.register("Ann").await;
    for _ in 0..=defaults.login_free_attempts {
        let (answer, _) = login(&app, &ann.email, "wrong password", None).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The attempt after the free ones set a 1 s delay: even the right password waits.
    let (answer, retry) = login(&app, &ann.email, PASSWORD, None).await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(retry, Some(1));
}

#[tokio::test]
async fn one_address_may_try_only_so_many_logins_a_minute_whatever_the_accounts() {
    let app = TestApp::spawn_with(|s| s.login_per_ip_per_min = 3).await;
    for i in 0..3 {
        let (answer, _) = login(&app, &format!("nobody{i}@example.com"), "wrong password", None).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (answer, retry) = login(&app, "nobody9@example.com", "wrong password", None).await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
}

#[tokio::test]
async fn a_distributed_guesser_is_slowed_but_cannot_lock_the_owner_out_of_a_known_address() {
    let app = TestApp::spawn_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.login_account_free_attempts = 3;
        s.login_account_backoff_cap_secs = 60;
    })
    .await;
    let ann = app.register("Ann").await;
    // Ann logged in from her address before the attack.
    let (answer, _) = login(&app, &ann.email, PASSWORD, Some("198.51.100.1")).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    // Four guesses from four addresses: the last sets the account-wide delay.
    for i in 1..=4 {
        let (answer, _) = login(&app, &ann.email, "wrong password", Some(&format!("203.0.113.{i}"))).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (answer, retry) = login(&app, &ann.email, "wrong password", Some("203.0.113.50")).await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(retry.is_some_and(|s| s <= 60), "{retry:?}");
    // Claiming her address left of the proxy's hop does not make it hers.
    let (answer, _) = login(&app, &ann.email, "wrong password", Some("198.51.100.1, 203.0.113.60")).await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // From her own address she is not held up.
    let (answer, _) = login(&app, &ann.email, PASSWORD, Some("198.51.100.1")).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn_with(|s| s.login_per_ip_per_min = 2).await;
    for from in ["203.0.113.1", "203.0.113.2"] {
        let (answer, _) = login(&app, "nobody@example.com", "wrong password", Some(from)).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // All three came from 127.0.0.1, whatever they claimed.
    let (answer, _) = login(&app, "nobody@example.com", "wrong password", Some("203.0.113.3")).await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let app = TestApp::spawn_with(|s| s.register_per_ip_per_hour = 2).await;
    app.register("Ann").await;
    app.register("Bob").await;
    let refused = app.post("/auth/register", None, json!({"email": "cy@example.com", "password": PASSWORD, "name": "Cy"})).await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn lookups_and_searches_are_limited_per_user_across_nodes() {
    let mut settings = fresh_settings();
    settings.lookup_per_min = 3;
    settings.search_per_min = 3;
    let a = TestApp::spawn_settings(settings, duet::Service::ALL).await;
    let b = a.spawn_peer().await;
    let ann = a.register("Ann").await;
    let bob = a.register("Bob").await;
    for path in [format!("/users/lookup?email={}", bob.email), "/search?q=hello".to_owned()] {
        // A budget of 3 (refilling at 1/s) spread over two nodes: some request of ten is refused.
        let mut answers = Vec::new();
        for i in 0..10 {
            let node = if i % 2 == 0 { &a } else { &b };
            answers.push(node.get(&path, Some(&ann.token)).await);
        }
        assert!(answers[..3].iter().all(|(status, _)| *status == StatusCode::OK), "{path}: {answers:?}");
        let refused =
            answers.iter().find(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS).unwrap_or_else(|| panic!("{path}: {answers:?}"));
        assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        // Another user has a budget of their own.
        assert_eq!(a.get(&path, Some(&bob.token)).await.0, StatusCode::OK, "{path}");
    }
}
