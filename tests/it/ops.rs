use duet::Service;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error, fresh_settings};

#[tokio::test]
async fn health_readiness_metrics_and_docs_are_served() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await, (StatusCode::OK, serde_json::Value::String("ok".into())));
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&ready["ready"], &ready["postgres"], &ready["redis"]), (&json!(true), &json!(true), &json!(true)));
    // Every supervised component of a full node, healthy.
    let components = ready["components"].as_object().unwrap();
    let names: Vec<&str> = components.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["lastseen-mover", "lastseen-worker", "outbox-upkeep", "presence-sweeper", "projector", "push-triggers", "push-worker", "relay"],
        "{ready}"
    );
    for (name, health) in components {
        assert_eq!(health, &json!({"healthy": true, "restarts": 0, "downForMs": 0}), "{name}");
    }
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "counted").await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("duet_http_requests_total{"), "{metrics}");
    // Group commit reports its batches: one append so far, in one batch.
    assert!(metrics.contains(r#"duet_batch_size_sum{batcher="append"} 1.0"#), "{metrics}");
    assert!(metrics.contains(r#"duet_batch_wait_seconds_count{batcher="append"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"duet_batch_seconds_count{batcher="append"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"route="/auth/register",status="201""#), "{metrics}");
    assert!(metrics.contains("duet_http_request_duration_seconds_bucket"), "{metrics}");
    let docs = app.http_raw().get(app.admin_url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

/// `/metrics` is on the loopback admin listener only; the public port
/// answers it as any unknown path.
#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_and_not_on_the_public_port() {
    let app = TestApp::spawn().await;
    assert_ne!(app.admin_addr.port(), app.addr.port());
    assert_error(&app.get("/metrics", None).await, StatusCode::NOT_FOUND, "not_found");
    let admin = app.http_raw().get(app.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    assert!(admin.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = admin.text().await.unwrap();
    assert!(text.contains(r#"route="unmatched",status="404""#), "the public 404 is counted as unmatched: {text}");
    // The admin listener answers unknown paths as the public one does.
    let unknown = app.http_raw().get(app.admin_url("/auth/login")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["code"], "not_found");
}

/// Load balancers and client generators keep what they need on the public
/// port; the API page leaves it in production.
#[tokio::test]
async fn the_api_page_is_public_only_outside_production_and_health_is_on_both_listeners() {
    let development = TestApp::spawn().await;
    let production = TestApp::spawn_with(|s| {
        s.env = duet_common::settings::Environment::Production;
        s.jwt_secret = Some("a production secret of 32 bytes or more".into());
    })
    .await;
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status() };
    assert_eq!(status(development.url("/docs")).await, StatusCode::OK);
    assert_eq!(status(development.admin_url("/docs")).await, StatusCode::OK);
    assert_error(&production.get("/docs", None).await, StatusCode::NOT_FOUND, "not_found");
    let page = production.http_raw().get(production.admin_url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    for app in [&development, &production] {
        for path in ["/healthz", "/readyz", "/openapi.json", "/asyncapi.yaml", "/asyncapi.json"] {
            assert_eq!(status(app.url(path)).await, StatusCode::OK, "public {path}");
            assert_eq!(status(app.admin_url(path)).await, StatusCode::OK, "admin {path}");
        }
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let resp = app.http_raw().get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app.http_raw().get(app.url("/nowhere")).send().await.unwrap();
    assert!(!resp.headers()["x-request-id"].is_empty());
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn a_node_without_redis_stays_ready_and_writes_still_work() {
    // Nothing listens on port 1. Chat works on PostgreSQL alone, so the node
    // stays ready, even once the components that need Redis are long down.
    let app = TestApp::spawn_with(|s| {
        s.redis_url = "redis://127.0.0.1:1".into();
        s.component_down_ready_ms = 0;
    })
    .await;
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!((&ready["ready"], &ready["postgres"], &ready["redis"]), (&json!(true), &json!(true), &json!(false)));
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "stored without Redis").await;
}

#[tokio::test]
async fn a_process_serves_only_the_services_it_runs() {
    let writer = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi]).await;
    let ann = writer.register("Ann").await;
    assert_error(&writer.get("/me", Some(&ann.token)).await, StatusCode::NOT_FOUND, "not_found");

    let mut settings = writer.settings.clone();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    let reader = TestApp::spawn_settings(settings, &[Service::QueryApi]).await;
    let (status, me) = reader.get("/me", Some(&ann.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], ann.id.to_string());
    let refused =
        reader.post("/auth/register", None, json!({"email": "b@example.com", "password": crate::helpers::PASSWORD, "name": "B"})).await;
    assert_eq!(refused.0, StatusCode::NOT_FOUND);
    // The spec is the whole contract either way.
    let (_, spec) = reader.get("/openapi.json", None).await;
    assert!(spec["paths"]["/auth/register"].is_object());
}

#[tokio::test]
async fn migrations_are_applied_once_when_processes_start_together() {
    let settings = fresh_settings();
    let starts = (0..4).map(|_| {
        let settings = settings.clone();
        async move { TestApp::spawn_settings(settings, Service::ALL).await }
    });
    let apps = futures_util::future::join_all(starts).await;
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations").fetch_one(&apps[0].db).await.unwrap();
    assert_eq!(applied, duet_common::db::MIGRATOR.iter().count() as i64);
}

/// Made-up paths and ids share one `unmatched` route label: requests to
/// them cannot grow `/metrics`, nor write an id into it.
#[tokio::test]
async fn requests_to_unknown_paths_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    let series = |text: &str| text.lines().filter(|l| l.starts_with("duet_http_")).count();
    let http = app.http_raw();
    // One of each kind first (404, and 400 for a bad id): the statuses are a bounded label too.
    http.get(app.url("/warm")).send().await.unwrap();
    http.get(app.url("/conversations/warm")).send().await.unwrap();
    // The first read records `/metrics` itself; the second shows it.
    app.metrics().await;
    let before = app.metrics().await;
    let secret = uuid::Uuid::new_v4();
    for n in 0..200 {
        http.get(app.url(&format!("/random-{n}/{}", uuid::Uuid::new_v4()))).send().await.unwrap();
    }
    http.get(app.url(&format!("/conversations/{secret}x"))).send().await.unwrap();
    let after = app.metrics().await;
    assert!(after.contains(r#"route="unmatched""#), "{after}");
    assert!(!after.contains(&secret.to_string()), "an id reached a label");
    assert_eq!(series(&after), series(&before), "no new series");
}

#[tokio::test]
async fn a_method_the_route_does_not_answer_gets_405_naming_the_ones_it_does() {
    let app = TestApp::spawn().await;
    let http = app.http_raw();
    let trace = http.request(reqwest::Method::from_bytes(b"TRACE").unwrap(), app.url("/auth/login")).send().await.unwrap();
    assert_eq!(trace.status(), 405);
    assert_eq!(trace.headers()["allow"], "POST");
    let id = uuid::Uuid::new_v4();
    let delete = http.delete(app.url(&format!("/conversations/{id}/messages"))).send().await.unwrap();
    assert_eq!(delete.status(), 405);
    assert_eq!(delete.headers()["allow"], "GET, POST", "both methods of a path shared by the command and query APIs");
    let body: serde_json::Value = delete.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
}

/// Each test cleans up after itself (tests/it/helpers.rs), so concurrent
/// runs never need a global sweep that would drop each other's databases.
#[tokio::test]
async fn the_last_node_of_a_passing_test_drops_its_database_and_redis_keys() {
    use fred::prelude::*;
    use futures_util::TryStreamExt;
    use sqlx::migrate::MigrateDatabase;

    let app = TestApp::spawn().await;
    let peer = app.spawn_peer().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "hello").await;
    let settings = app.settings.clone();
    let ctx = crate::read_side_support::context_of(&settings).await;
    crate::read_side_support::caught_up(&ctx).await;
    let keys = || async {
        let found: Vec<Key> =
            ctx.redis.next().scan_buffered(format!("{}*", settings.redis_prefix), Some(1000), None).try_collect().await.unwrap();
        found.into_iter().map(|k| k.as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
    };
    assert!(!keys().await.is_empty(), "the projections are under the test's prefix");

    drop(peer);
    assert!(sqlx::Postgres::database_exists(&settings.database_url).await.unwrap(), "another node still uses it");
    app.stop().await;
    assert!(!sqlx::Postgres::database_exists(&settings.database_url).await.unwrap());
    assert_eq!(keys().await, Vec::<String>::new());
}

/// Browser apps on an allowed origin may call the REST API (CORS); other
/// origins are refused; clients without `Origin` are not concerned.
#[tokio::test]
async fn allowed_browser_origins_may_call_the_api_and_others_may_not() {
    let app = TestApp::spawn_with(|s| s.allowed_origins = vec!["https://app.duet.example".into()]).await;
    let http = app.http_raw();
    let preflight = http
        .request(reqwest::Method::OPTIONS, app.url("/auth/login"))
        .header("origin", "https://app.duet.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.duet.example");
    let allowed = http.get(app.url("/me")).header("origin", "https://app.duet.example").send().await.unwrap();
    assert_eq!(allowed.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.duet.example");
    let other = http.get(app.url("/me")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(other.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(other.json::<serde_json::Value>().await.unwrap()["code"], "origin_not_allowed");
    let native = http.get(app.url("/healthz")).send().await.unwrap();
    assert!(native.status().is_success() && native.headers().get("access-control-allow-origin").is_none());
}
