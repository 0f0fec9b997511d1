//! Duet on every Redis topology its URL can name: a Redis Cluster (3
//! masters with replicas), Redis behind Sentinel with a failover in the
//! middle, and TLS (`rediss://`). The servers come from
//! scripts/redis-cluster.sh, which scripts/test runs; a test whose variable
//! is unset says so and is skipped. Also: the upgrade from the unsharded
//! event stream, on the ordinary test Redis.

use std::time::Duration;

use duet::Service;
use duet_common::protocol::ServerKind;
use duet_common::settings::Settings;
use duet_projector::{Projector, ProjectorConfig};
use fred::prelude::*;
use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_error, fresh_settings};
use crate::read_side_support::*;
use crate::ws::WsClient;

/// The URL in `var`, or `None` after saying why the test is skipped.
fn topology(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {var} is unset (scripts/redis-cluster.sh starts the servers and sets it; scripts/test does both)");
            None
        }
    }
}

/// Fresh settings on the Redis at `url`.
fn on(url: &str) -> Settings {
    let mut settings = fresh_settings();
    settings.redis_url = url.to_owned();
    settings
}

/// Sends, live delivery to a peer's socket on another node, receipts,
/// projections (lists, unread counts, markers), presence and sync, with
/// each user's keys and channel in a slot of its own.
#[tokio::test]
async fn chat_runs_on_a_redis_cluster() {
    let Some(url) = topology("DUET_TEST_REDIS_CLUSTER_URL") else { return };
    let app = TestApp::spawn_settings(on(&url), Service::ALL).await;
    let peer = app.spawn_peer().await;

    // The scripted conversations of three users; projections as on one Redis.
    let s = run_script(&app).await;
    let ctx = context_of(&app.settings).await;
    assert!(ctx.redis.next().is_clustered());
    caught_up(&ctx).await;
    for (name, user) in [("ann", &s.ann), ("bob", &s.bob), ("cat", &s.cat)] {
        assert_eq!(lines(&list(&app, user).await), expected(name), "{name}'s list");
    }
    assert!(app.metrics().await.contains("duet_query_conversation_lists_total{source=\"redis\"}"));

    // Live: Ann on one node, Bob on the other, over sharded Pub/Sub.
    app.set_presence_visibility(&s.ann, "everyone").await;
    let mut b = WsClient::connect(&peer, &s.bob).await;
    let mut a = WsClient::connect(&app, &s.ann).await;
    let online = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == s.ann.id.to_string()).await;
    assert_eq!(online["status"], "online");
    for i in 1..=5 {
        let ack = a.send_message(s.ab, &format!("cluster {i}")).await;
        let message = b.next_message().await;
        assert_eq!((message["id"].clone(), message["seq"].as_i64()), (ack["messageId"].clone(), Some(3 + i)));
    }
    // Sync reads PostgreSQL whatever Redis is; it agrees with what came live.
    let synced = b.sync(serde_json::json!({"conversations": [{"conversationId": s.ab, "afterSeq": 3}]})).await;
    assert_eq!(synced["conversations"][0]["messages"].as_array().map(Vec::len), Some(5), "{synced}");
    caught_up(&ctx).await;
    let bob = lines(&list(&app, &s.bob).await);
    assert_eq!((bob[0].0.as_str(), bob[0].1.as_str(), bob[0].2, bob[0].3), ("Ann", "cluster 5", 8, 6), "{bob:?}");

    // Offline is announced across nodes when Ann's last session closes.
    a.close().await;
    let offline = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == s.ann.id.to_string()).await;
    assert_eq!(offline["status"], "offline");
}

/// The per-user send bucket holds on a cluster (one key per user, any slot).
#[tokio::test]
async fn the_send_rate_limit_holds_on_a_redis_cluster() {
    let Some(url) = topology("DUET_TEST_REDIS_CLUSTER_URL") else { return };
    let mut settings = on(&url);
    settings.rate_limit_per_sec = 1;
    settings.rate_limit_burst = 3;
    let app = TestApp::spawn_settings(settings, Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut limited = None;
    for i in 0..10 {
        let answer = app.send(&ann, conversation, &format!("c{i}"), "hello").await;
        if answer.0 == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, answer));
            break;
        }
        assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    }
    let (i, answer) = limited.expect("the bucket ran out");
    assert!((3..=4).contains(&i), "a burst of 3 (and a token refilled meanwhile) before the limit: {i}");
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

/// A Sentinel failover in the middle of a conversation: Duet follows the
/// new master; everything sent before and after is delivered live or
/// filled from PostgreSQL, and projected.
#[tokio::test]
async fn chat_follows_a_sentinel_failover() {
    let Some(url) = topology("DUET_TEST_REDIS_SENTINEL_URL") else { return };
    let app = TestApp::spawn_settings(on(&url), Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;
    let mut b = WsClient::connect(&app, &bob).await;
    a.send_message(conversation, "before").await;
    assert_eq!(b.next_message().await["seq"], 1);

    let sentinel = Sentinel::of(&url).await;
    let old = sentinel.master().await;
    sentinel.failover().await;
    let new = eventually("Sentinel to promote the replica", Duration::from_secs(30), || async {
        let now = sentinel.master().await;
        (now != old).then_some(now)
    })
    .await;
    eprintln!("failover: master {old} -> {new}");

    // Sends are stored in PostgreSQL whatever Redis does; the gateway
    // delivers each live or re-reads it once its subscription is back.
    for i in 2..=6 {
        a.send_message(conversation, &format!("after {i}")).await;
    }
    let mut seqs = Vec::new();
    while seqs.last() != Some(&6) {
        seqs.push(b.next_message().await["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, vec![2, 3, 4, 5, 6], "each once, in order");
    let ctx = context_of(&app.settings).await;
    eventually("the projections on the new master", Duration::from_secs(30), || async {
        let bob = lines(&list(&app, &bob).await);
        (bob.first().map(|l| (l.1.as_str(), l.2)) == Some(("after 6", 6))).then_some(())
    })
    .await;
    // The relay and the consumers write to the new master.
    caught_up(&ctx).await;
    let role: Vec<Value> =
        ctx.redis.next().custom(fred::types::CustomCommand::new_static("ROLE", None, false), Vec::<String>::new()).await.unwrap();
    assert_eq!(role.first().and_then(|r| r.as_string()).as_deref(), Some("master"));
}

/// Sentinel's own address and the service name, from a `redis-sentinel://` URL.
struct Sentinel {
    client: Client,
    service: String,
}

impl Sentinel {
    async fn of(url: &str) -> Sentinel {
        let (address, query) = url.strip_prefix("redis-sentinel://").and_then(|rest| rest.split_once('?')).expect("a sentinel URL");
        let service = query.split('&').find_map(|pair| pair.strip_prefix("sentinelServiceName=")).expect("a service name").to_owned();
        let client = Builder::from_config(Config::from_url(&format!("redis://{address}")).unwrap()).build().unwrap();
        client.init().await.expect("Sentinel answers");
        Sentinel { client, service }
    }

    async fn command(&self, args: Vec<String>) -> Value {
        self.client.custom(fred::types::CustomCommand::new_static("SENTINEL", None, false), args).await.expect("SENTINEL answers")
    }

    /// The master's `host:port`, as Sentinel sees it now.
    async fn master(&self) -> String {
        let address = self.command(vec!["GET-MASTER-ADDR-BY-NAME".into(), self.service.clone()]).await.into_array();
        address.iter().filter_map(|part| part.as_string()).collect::<Vec<_>>().join(":")
    }

    async fn failover(&self) {
        self.command(vec!["FAILOVER".into(), self.service.clone()]).await;
    }
}

/// Over TLS with the deployment's CA: the whole app works; without the CA
/// the connection fails and says why.
#[tokio::test]
async fn rediss_connects_with_the_ca_and_fails_clearly_without_it() {
    let Some(url) = topology("DUET_TEST_REDISS_URL") else { return };
    let ca = std::path::PathBuf::from(std::env::var("DUET_TEST_REDIS_CA_FILE").expect("DUET_TEST_REDIS_CA_FILE with DUET_TEST_REDISS_URL"));

    let mut settings = on(&url);
    settings.redis_ca_file = Some(ca.clone());
    let app = TestApp::spawn_settings(settings, Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&app, &ann).await;
    let mut b = WsClient::connect(&app, &bob).await;
    let ack = a.send_message(conversation, "over TLS").await;
    assert_eq!(b.next_message().await["id"], ack["messageId"]);
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    assert_eq!(lines(&list(&app, &bob).await)[0].3, 1, "one unread, projected through rediss://");

    // The system's roots do not know the test CA.
    let client = Builder::from_config(duet_common::redis::config(&url, None).unwrap()).build().unwrap();
    let refused = client.init().await.expect_err("a certificate of an unknown CA is refused");
    assert!(format!("{refused}").to_lowercase().contains("certificate"), "{refused}");
    // A CA file that is not one is a configuration error, named.
    let missing = duet_common::redis::config(&url, Some(std::path::Path::new("/nonexistent/ca.pem"))).unwrap_err();
    assert!(format!("{missing:#}").contains("DUET_REDIS_CA_FILE /nonexistent/ca.pem"), "{missing:#}");
}

/// Events a relay of the version before shards left in `events` are read
/// and acknowledged by the consumer groups after the upgrade, then the old
/// stream is left alone.
#[tokio::test]
async fn events_left_in_the_unsharded_stream_are_drained_after_the_upgrade() {
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi, Service::QueryApi]).await;
    run_script(&app).await;
    let ctx = context_of(&app.settings).await;
    // What the old relay did: every outbox row onto `events`, the position past them.
    let rows: Vec<(i64, String)> =
        sqlx::query_as("select id, payload::text from outbox order by txid, id").fetch_all(&app.db).await.unwrap();
    let unsharded = ctx.keys.unsharded_events();
    for (id, payload) in &rows {
        let _: String = ctx
            .redis
            .next()
            .xadd(&unsharded, false, None::<()>, "*", vec![("id", id.to_string()), ("event", payload.clone())])
            .await
            .unwrap();
    }
    sqlx::query("update relay_position set (txid, outbox_id) = (select txid, id from outbox order by txid desc, id desc limit 1)")
        .execute(&app.db)
        .await
        .unwrap();

    let projector = Projector::start(&ctx, ProjectorConfig::new("upgraded")).await.unwrap();
    eventually("the projector group to drain the unsharded stream", Duration::from_secs(20), || async {
        let groups: Value = ctx.redis.next().xinfo_groups(&unsharded).await.ok()?;
        let fields: Vec<Value> = groups.into_array().into_iter().next()?.into_array();
        let field = |name: &str| fields.chunks(2).find(|p| p[0].as_string().as_deref() == Some(name)).and_then(|p| p[1].as_i64());
        (field("lag") == Some(0) && field("pending") == Some(0)).then_some(())
    })
    .await;
    assert!(projector.metrics.applied.get() >= rows.len() as u64, "every old entry applied");
    projector.stop().await;
    let length: i64 = ctx.redis.next().xlen(&unsharded).await.unwrap();
    assert_eq!(length, rows.len() as i64, "nothing was written to the old stream");
}
