//! The projector: exact projections from a scripted sequence, idempotent
//! replay, crash and restart, rebuild equals live, lag in /metrics.

use std::time::Duration;

use duet::Service;
use duet_common::read_model::{self as read, is_ready};
use duet_projector::apply::{Pairs, apply_event, apply_merges, merges};
use duet_projector::{Projector, ProjectorConfig, rebuild};
use fred::prelude::*;
use futures_util::TryStreamExt;
use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_error, fresh_settings};
use crate::read_side_support::*;

#[tokio::test]
async fn scripted_sends_deliveries_and_reads_give_exact_lists_unread_counts_and_markers() {
    let app = TestApp::spawn().await;
    let s = run_script(&app).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    for (name, user) in [("ann", &s.ann), ("bob", &s.bob), ("cat", &s.cat)] {
        assert_eq!(lines(&list(&app, user).await), expected(name), "{name}'s list");
    }
    // Served by the projection, not the fallback.
    let (entries, more) = read::list(&ctx, s.ann.id, None, 10).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.conversation_id).collect::<Vec<_>>(), vec![s.ac, s.ab]);
    assert!(!more);
    let metrics = app.metrics().await;
    assert!(metrics.contains("duet_query_conversation_lists_total{source=\"redis\"}"), "{metrics}");

    // One conversation; paging with a cursor; errors.
    let (status, one) = app.get(&format!("/conversations/{}", s.ab), Some(&s.bob.token)).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(lines(&serde_json::json!({"items": [one]})), vec![expected("bob")[1].clone()]);
    let (_, first) = app.get("/conversations?limit=1", Some(&s.cat.token)).await;
    let cursor = first["nextCursor"].as_str().expect("a next cursor").to_owned();
    let (_, second) = app.get(&format!("/conversations?limit=1&cursor={cursor}"), Some(&s.cat.token)).await;
    assert_eq!([lines(&first), lines(&second)].concat(), expected("cat"));
    assert!(second["nextCursor"].is_null(), "{second}");
    assert_error(&app.get(&format!("/conversations/{}", s.bc), Some(&s.ann.token)).await, StatusCode::NOT_FOUND, "conversation_not_found");
    assert_error(&app.get("/conversations?cursor=nope", Some(&s.ann.token)).await, StatusCode::BAD_REQUEST, "invalid_cursor");
    assert_error(&app.get("/conversations?limit=0", Some(&s.ann.token)).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_error(&app.get("/conversations", None).await, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_postgres_fallback_answers_the_same_lists_when_the_projection_is_cold() {
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi, Service::QueryApi]).await;
    let s = run_script(&app).await;
    // No projector has ever run: the projections are cold.
    let ctx = context_of(&app.settings).await;
    assert!(!is_ready(&ctx).await.unwrap());
    for (name, user) in [("ann", &s.ann), ("bob", &s.bob), ("cat", &s.cat)] {
        assert_eq!(lines(&list(&app, user).await), expected(name), "{name}'s list");
    }
}

#[tokio::test]
async fn redis_down_the_list_still_answers_from_postgres_with_the_same_content() {
    let app = TestApp::spawn().await;
    let s = run_script(&app).await;
    caught_up(&context_of(&app.settings).await).await;
    let from_redis = list(&app, &s.ann).await;
    let cut_off = app.spawn_cut_off_peer(&[Service::QueryApi]).await;
    let from_postgres = list(&cut_off, &s.ann).await;
    assert_eq!(from_postgres, from_redis);
    assert_eq!(lines(&from_postgres), expected("ann"));
    let (status, one) = cut_off.get(&format!("/conversations/{}", s.ac), Some(&s.ann.token)).await;
    assert_eq!((status, one), (StatusCode::OK, from_redis["items"][0].clone()));
    let metrics = cut_off.metrics().await;
    assert!(metrics.contains("duet_query_conversation_lists_total{source=\"postgres_redis_down\"}"), "{metrics}");
}

#[tokio::test]
async fn applying_every_event_again_in_any_order_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, ctx, before) = projected_script(&app).await;

    // Directly, one at a time, newest first, twice over.
    let mut events = outbox_events(&app).await;
    events.reverse();
    let pairs = Pairs::new(ctx.db.clone());
    for _ in 0..2 {
        for event in &events {
            apply_event(&ctx, &pairs, event.clone()).await.unwrap();
        }
    }
    assert_eq!(read::dump(&ctx).await.unwrap(), before);

    // Through the whole pipeline: the relay publishes everything again.
    let republished = duet_projector::relay::rewind(&app.db).await.unwrap();
    assert_eq!(republished as usize, events.len());
    caught_up(&ctx).await;
    assert_eq!(read::dump(&ctx).await.unwrap(), before);
}

/// A batch's merges into one entry are folded into one script visit: from
/// nothing, the whole history in one call must give what the live projector
/// built one batch at a time, and applying it again in reverse must not move it.
#[tokio::test]
async fn every_event_folded_into_one_apply_gives_the_same_projections() {
    let app = TestApp::spawn().await;
    let (_, ctx, live) = projected_script(&app).await;
    let pairs = Pairs::new(ctx.db.clone());
    let mut all = Vec::new();
    for event in outbox_events(&app).await {
        all.extend(merges(&pairs, event).await.unwrap());
    }
    let doomed = duet_common::redis::scan_all(ctx.redis.next(), ctx.keys.all_projections()).await.unwrap();
    duet_common::redis::delete_all(ctx.redis.next(), doomed).await.unwrap();
    assert!(read::dump(&ctx).await.unwrap().is_empty());

    apply_merges(&ctx, &all).await.unwrap();
    assert_eq!(read::dump(&ctx).await.unwrap(), live, "oldest first, from nothing");
    all.reverse();
    apply_merges(&ctx, &all).await.unwrap();
    assert_eq!(read::dump(&ctx).await.unwrap(), live, "newest first, on top");
}

/// A rebuilt entry's unread set goes to Redis in pieces (of 1,000 seqs per
/// script entry, 500 per ZADD): over a thousand unread messages must come
/// back exactly as the live projector counted them.
#[tokio::test]
async fn a_rebuilt_entry_with_a_thousand_unread_equals_the_live_one() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let ab = app.conversation(&ann, &bob).await;
    let texts: Vec<String> = (0..1200).map(|i| format!("m {i}")).collect();
    for chunk in texts.chunks(50) {
        futures_util::future::join_all(chunk.iter().map(|text| app.send_ok(&ann, ab, text))).await;
    }
    mark(&app, &bob, ab, "read", 50).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    let live = read::dump(&ctx).await.unwrap();
    assert_eq!(lines(&list(&app, &bob).await)[0].3, 1150, "unread after reading 50 of 1,200");
    rebuild::rebuild(&ctx).await.unwrap().expect("no other rebuild runs");
    assert_eq!(read::dump(&ctx).await.unwrap(), live);
}

#[tokio::test]
async fn rebuild_from_postgres_equals_the_live_projections() {
    let app = TestApp::spawn().await;
    run_script(&app).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    let live = read::dump(&ctx).await.unwrap();
    let rebuilt = rebuild::rebuild(&ctx).await.unwrap().expect("no other rebuild runs");
    assert_eq!(rebuilt.entries, 6);
    assert_eq!(read::dump(&ctx).await.unwrap(), live);
    assert!(is_ready(&ctx).await.unwrap());
}

/// Edits, unsends, hides and reactions reach the lists live (preview,
/// unread) and a rebuild from PostgreSQL reaches the very same state.
#[tokio::test]
async fn rebuild_equals_the_live_projections_after_edits_unsends_hides_and_reactions() {
    let app = TestApp::spawn().await;
    let s = run_script(&app).await;
    let (ab, ac, bc) = (app.history(&s.ann, s.ab).await, app.history(&s.ann, s.ac).await, app.history(&s.cat, s.bc).await);
    assert_eq!(app.edit(&s.ann, s.ab, &ab[2], "e-1", "ab 3 edited").await.0, StatusCode::OK);
    assert_eq!(app.react(&s.bob, s.ab, &ab[1], Some("👍")).await.0, StatusCode::OK);
    assert_eq!(app.unsend(&s.cat, s.ac, &ac[2]).await.0, StatusCode::OK);
    assert_eq!(app.hide(&s.cat, s.bc, &bc[0]).await.0, StatusCode::NO_CONTENT);
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    let entry = |page: serde_json::Value, conversation| {
        page["items"].as_array().unwrap().iter().find(|c| c["id"] == serde_json::json!(conversation)).unwrap().clone()
    };
    let bob_ab = entry(list(&app, &s.bob).await, s.ab);
    assert_eq!((&bob_ab["lastMessage"]["text"], &bob_ab["unreadCount"]), (&serde_json::json!("ab 3 edited"), &serde_json::json!(1)));
    let ann_ac = entry(list(&app, &s.ann).await, s.ac);
    assert!(ann_ac["lastMessage"]["deletedAt"].is_string() && ann_ac["unreadCount"] == 0, "{ann_ac}");
    assert_eq!(entry(list(&app, &s.cat).await, s.bc)["unreadCount"], 0, "a hidden message is not unread");

    let live = read::dump(&ctx).await.unwrap();
    rebuild::rebuild(&ctx).await.unwrap().expect("no other rebuild runs");
    assert_eq!(read::dump(&ctx).await.unwrap(), live);
}

#[tokio::test]
async fn a_killed_projector_leaves_nothing_behind_once_another_takes_over() {
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi, Service::QueryApi]).await;
    let s = run_script(&app).await;
    for i in 0..60 {
        app.send_ok(if i % 2 == 0 { &s.ann } else { &s.bob }, s.ab, &format!("more {i}")).await;
        app.send_ok(&s.cat, s.bc, &format!("cat {i}")).await;
    }
    mark(&app, &s.bob, s.ab, "read", 40).await;
    mark(&app, &s.bob, s.bc, "read", 30).await;

    // A first projector is killed once it has applied some events.
    let ctx_a = context_of(&app.settings).await;
    let mut config = ProjectorConfig::new("a");
    config.consumer.batch = 4;
    let a = Projector::start(&ctx_a, config).await.unwrap();
    let metrics = a.metrics.clone();
    // (Killing it mid-rebuild would leave the rebuild lock to expire first.)
    eventually("the first projector to apply events", Duration::from_secs(20), || async {
        let ready = is_ready(&ctx_a).await.unwrap_or(false);
        // Ready is set just before the rebuild lock is released: wait for both.
        let locked: i64 = ctx_a.redis.next().exists(ctx_a.keys.rebuild_lock()).await.unwrap_or(1);
        (ready && locked == 0 && metrics.applied.get() > 0).then_some(())
    })
    .await;
    a.kill();

    // A consumer that read entries and crashed before acknowledging them.
    // (New events, relayed by hand: the first projector may have read all
    // the earlier ones before it died.)
    let ctx = context_of(&app.settings).await;
    for i in 0..5 {
        app.send_ok(&s.cat, s.bc, &format!("after the crash {i}")).await;
    }
    // (A row held back by some transaction still running is taken once it ends.)
    while duet_projector::relay::unrelayed(&app.db).await.unwrap().0 > 0 {
        duet_projector::relay::relay_once(&ctx, 100).await.unwrap();
    }
    // (All five in one conversation, so on one stream shard.)
    let stream = ctx.keys.events(duet_common::keys::stream_shard(Some(s.bc), ctx.settings.stream_shards));
    let _: Value = ctx.redis.next().xreadgroup("projector", "ghost", Some(20), None, false, stream.as_str(), ">").await.unwrap();
    // Pruning never forgets a consumer that still holds pending work.
    duet_common::stream::forget_idle_consumers(&ctx, duet_projector::consumer::GROUP, Duration::ZERO).await.unwrap();
    let consumers: Value = ctx.redis.next().xinfo_consumers(stream.as_str(), "projector").await.unwrap();
    assert!(format!("{consumers:?}").contains("ghost"), "{consumers:?}");

    // Another projector claims what both left pending and finishes the job.
    let mut config = ProjectorConfig::new("b");
    config.consumer.claim_idle = Duration::from_millis(200);
    let b = Projector::start(&context_of(&app.settings).await, config).await.unwrap();
    caught_up(&ctx).await;
    let live = read::dump(&ctx).await.unwrap();
    b.stop().await;
    // Once nothing is pending, the dead consumers can be forgotten.
    let forgotten = duet_common::stream::forget_idle_consumers(&ctx, duet_projector::consumer::GROUP, Duration::ZERO).await.unwrap();
    assert!(forgotten >= 2, "ghost and a (and b) are idle with nothing pending: {forgotten}");
    assert_eq!(duet_projector::relay::unrelayed(&app.db).await.unwrap().0, 0);
    for (name, user) in [("ann", &s.ann), ("cat", &s.cat)] {
        let lines = lines(&list(&app, user).await);
        assert_eq!(lines.len(), 2, "{name}: {lines:?}");
    }
    rebuild::rebuild(&ctx).await.unwrap().expect("no other rebuild runs");
    assert_eq!(read::dump(&ctx).await.unwrap(), live, "the live state after the crash equals a rebuild");
}

#[tokio::test]
async fn projector_lag_is_exposed_in_metrics() {
    let app = TestApp::spawn().await;
    run_script(&app).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    let metrics = eventually("lag gauges at zero", Duration::from_secs(10), || async {
        let text = app.metrics().await;
        (text.contains("duet_projector_events_behind 0") && text.contains("duet_projector_oldest_pending_age_seconds 0.0")).then_some(text)
    })
    .await;
    assert!(metrics.contains("duet_projector_events_applied_total"), "{metrics}");
}

#[tokio::test]
async fn projections_heal_by_themselves_after_redis_loses_them() {
    let app = TestApp::spawn().await;
    let s = run_script(&app).await;
    let ctx = context_of(&app.settings).await;
    caught_up(&ctx).await;
    let before = read::dump(&ctx).await.unwrap();
    // Everything of this deployment vanishes from Redis: stream, group, projections, marker.
    let doomed: Vec<Key> = ctx.redis.next().scan_buffered(format!("{}*", ctx.keys.prefix()), Some(1000), None).try_collect().await.unwrap();
    assert!(doomed.len() > 5, "{doomed:?}");
    let _: i64 = ctx.redis.next().del(doomed).await.unwrap();
    assert!(read::dump(&ctx).await.unwrap().is_empty());
    // The projector rebuilds from PostgreSQL, and new events flow again.
    caught_up(&ctx).await;
    assert_eq!(read::dump(&ctx).await.unwrap(), before);
    app.send_ok(&s.bob, s.ab, "after the loss").await;
    caught_up(&ctx).await;
    let ann = lines(&list(&app, &s.ann).await);
    assert_eq!(ann[0].1, "after the loss", "{ann:?}");
    assert_eq!(ann[0].3, 1, "one unread from Bob");
}

/// The relay keeps one position instead of marking rows, so the case that
/// breaks an "up to id N" cursor must hold: a row with the lower id that
/// commits after a row with a higher id is relayed, once, and nothing passes
/// a transaction that is still open.
#[tokio::test]
async fn an_event_that_commits_late_below_the_position_is_still_relayed_once() {
    use duet_projector::relay::{self, Backlog};
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi]).await;
    let ctx = context_of(&app.settings).await;
    let event = |n: i64| format!(r#"{{"late_test": {n}}}"#);
    let insert = "insert into outbox (event_type, payload) values ('late_test', $1::jsonb) returning id";

    // The early writer takes the lower id and stays open.
    let mut early = app.db.begin().await.unwrap();
    let early_id: i64 = sqlx::query_scalar(insert).bind(event(1)).fetch_one(&mut *early).await.unwrap();
    let late_id: i64 = sqlx::query_scalar(insert).bind(event(2)).fetch_one(&app.db).await.unwrap();
    assert!(early_id < late_id);
    // The committed row waits: the open transaction could still write below it.
    assert_eq!(relay::backlog(&ctx).await.unwrap(), Backlog::HeldBack);
    assert_eq!(relay::relay_once(&ctx, 100).await.unwrap(), 0);

    early.commit().await.unwrap();
    let mut relayed = 0;
    while relay::unrelayed(&app.db).await.unwrap().0 > 0 {
        relayed += relay::relay_once(&ctx, 100).await.unwrap();
    }
    assert_eq!(relay::backlog(&ctx).await.unwrap(), Backlog::Empty);

    // (Events without a conversation go to shard 0.)
    let stream = ctx.keys.events(0);
    let entries: Vec<(String, std::collections::HashMap<String, String>)> =
        ctx.redis.next().xrange(stream.as_str(), "-", "+", None).await.unwrap();
    let ids: Vec<i64> = entries
        .iter()
        .filter(|(_, fields)| fields["event"].contains("late_test"))
        .map(|(_, fields)| fields["id"].parse().unwrap())
        .collect();
    assert_eq!(ids, vec![early_id, late_id], "each once, in commit-safe order ({relayed} relayed in all)");
}
