//! History partitioned (migrations/0016_partitioned_history.sql,
//! docs/decisions/0009-partitioning.md): a database with data at 0015 is
//! migrated, keeps every message and event, and goes on appending with the
//! right seqs; history reads prune to one partition; the outbox's upkeep
//! makes partitions ahead and drops only published ones past the retention.

use std::time::Duration;

use duet::Service;
use duet_common::db::MIGRATOR;
use duet_projector::upkeep::maintain;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::helpers::{TestApp, fresh_settings};

/// The users, conversations and messages written at 0015.
struct Seeded {
    ann: Uuid,
    bob: Uuid,
    with_bob: Uuid,
    with_cat: Uuid,
    first: Uuid,
}

async fn append(conn: &mut PgConnection, conversation: Uuid, sender: Uuid, key: &str, text: &str, reply_to: Option<Uuid>) -> (Uuid, i64) {
    sqlx::query_as(
        "select id, seq from duet_append(array[gen_random_uuid()], array[$1::uuid], array[$2::uuid], array['text'], array[$3], \
         array[null::jsonb], array[$4], array[$5::uuid], now(), 'now', 1)",
    )
    .bind(conversation)
    .bind(sender)
    .bind(text)
    .bind(key)
    .bind(reply_to)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// Ann and Bob with three messages (a reply, a reaction, a hide, an edit, a
/// report, receipts), Ann and Cat with one.
async fn seed(conn: &mut PgConnection) -> Seeded {
    let [ann, bob, cat] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    for (id, name) in [(ann, "ann"), (bob, "bob"), (cat, "cat")] {
        sqlx::query("insert into users (id, email, name, password_hash) values ($1, $2 || '@example.com', $2, 'x')")
            .bind(id)
            .bind(name)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let [with_bob, with_cat] = [Uuid::new_v4(), Uuid::new_v4()];
    for (conversation, a, b) in [(with_bob, ann, bob), (with_cat, ann, cat)] {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        sqlx::query("insert into conversations (id, user_lo, user_hi) values ($1, $2, $3)")
            .bind(conversation)
            .bind(lo)
            .bind(hi)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("insert into conversation_members (conversation_id, user_id, peer_id) values ($1, $2, $3), ($1, $3, $2)")
            .bind(conversation)
            .bind(a)
            .bind(b)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let (first, _) = append(conn, with_bob, ann, "k1", "hello", None).await;
    let (second, _) = append(conn, with_bob, bob, "k1", "hi", None).await;
    let (_, third) = append(conn, with_bob, ann, "k2", "about hello", Some(first)).await;
    assert_eq!(third, 3);
    append(conn, with_cat, ann, "k9", "hello cat", None).await;
    sqlx::query(
        "insert into message_reactions (message_id, user_id, conversation_id, emoji, created_at) values ($1, $2, $3, 'x', now()); \
         ",
    )
    .bind(first)
    .bind(bob)
    .bind(with_bob)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("insert into message_hides (user_id, message_id, conversation_id, change_seq, created_at) values ($1, $2, $3, 1, now())")
        .bind(bob)
        .bind(second)
        .bind(with_bob)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "insert into message_edits (sender_id, client_edit_id, message_id, edit_count, created_at) values ($1, 'e1', $2, 1, now())",
    )
    .bind(ann)
    .bind(first)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "insert into reports (id, reporter_id, reported_user_id, message_id, reason, created_at) values ($1, $2, $3, $4, 'spam', now())",
    )
    .bind(Uuid::new_v4())
    .bind(bob)
    .bind(ann)
    .bind(first)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("update conversation_members set last_delivered_seq = 3, last_read_seq = 1 where conversation_id = $1 and user_id = $2")
        .bind(with_bob)
        .bind(bob)
        .execute(&mut *conn)
        .await
        .unwrap();
    Seeded { ann, bob, with_bob, with_cat, first }
}

#[tokio::test]
async fn a_database_with_messages_is_partitioned_in_place() {
    let settings = fresh_settings();
    duet_common::db::ensure_database(&settings.database_url).await.unwrap();
    let mut conn = PgConnection::connect(&settings.database_url).await.unwrap();
    MIGRATOR.run_to(15, &mut conn).await.unwrap();
    let seeded = seed(&mut conn).await;
    let before: Vec<(Uuid, Uuid, i64, String)> =
        sqlx::query_as("select id, conversation_id, seq, client_msg_id from messages order by id").fetch_all(&mut conn).await.unwrap();
    let events_before: Vec<(i64, String, String)> =
        sqlx::query_as("select id, event_type, payload::text from outbox order by id").fetch_all(&mut conn).await.unwrap();
    assert!(!events_before.is_empty());
    conn.close().await.unwrap();

    // The node applies 0016 at start-up, as a deployment would.
    let app = TestApp::spawn_settings(settings, duet::Service::ALL).await;
    let mut conn = app.db.acquire().await.unwrap();
    let partitioned: bool =
        sqlx::query_scalar("select relkind = 'p' from pg_class where oid = 'messages'::regclass").fetch_one(&mut *conn).await.unwrap();
    assert!(partitioned);
    let after: Vec<(Uuid, Uuid, i64, String)> =
        sqlx::query_as("select id, conversation_id, seq, client_msg_id from messages order by id").fetch_all(&mut *conn).await.unwrap();
    assert_eq!(after, before, "every message kept");
    let events_after: Vec<(i64, String, String)> =
        sqlx::query_as("select id, event_type, payload::text from outbox order by id").fetch_all(&mut *conn).await.unwrap();
    assert_eq!(events_after, events_before, "every event kept");
    assert_eq!(outbox_partitions(&app.db).await, ["outbox_default", "outbox_p0", "outbox_p1", "outbox_p2"]);
    assert_eq!(misplaced_events(&app.db).await, 0, "the copied events sit in their partitions, none in DEFAULT");
    let references: (i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from message_reactions where conversation_id = $1), \
                (select count(*) from message_hides where conversation_id = $1), \
                (select count(*) from message_edits where conversation_id = $1), \
                (select count(*) from reports where conversation_id = $1)",
    )
    .bind(seeded.with_bob)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(references, (1, 1, 1, 1), "reactions, hides, edits, reports keep their message and know its conversation");
    let unread: i64 = sqlx::query_scalar("select count(*) from unread_messages where user_id = $1 and conversation_id = $2")
        .bind(seeded.bob)
        .bind(seeded.with_bob)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(unread, 1, "Ann's third message is the one Bob has not read");
    let per_day: Vec<i64> = sqlx::query_scalar("select messages from analytics.messages_per_day").fetch_all(&mut *conn).await.unwrap();
    assert_eq!(per_day, [4], "the analytics views read the new table");

    // Sends go on: the next seq of each conversation, and a resend replays.
    assert_eq!(append(&mut conn, seeded.with_bob, seeded.ann, "k3", "again", None).await.1, 4);
    assert_eq!(append(&mut conn, seeded.with_cat, seeded.ann, "k2", "again", None).await.1, 2);
    assert_eq!(append(&mut conn, seeded.with_bob, seeded.ann, "k1", "resent", None).await, (seeded.first, 1));
    let next_event: i64 = sqlx::query_scalar("select max(id) from outbox").fetch_one(&mut *conn).await.unwrap();
    assert!(next_event > events_before.last().unwrap().0, "the outbox's ids go on from where they were");
    // A reference to a message must name its conversation.
    let err = sqlx::query(
        "insert into message_reactions (message_id, user_id, conversation_id, emoji, created_at) values ($1, $2, $3, 'x', now())",
    )
    .bind(seeded.first)
    .bind(seeded.ann)
    .bind(seeded.with_cat)
    .execute(&mut *conn)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("message_reactions_message_fkey"), "{err}");
}

#[tokio::test]
async fn a_history_read_scans_one_partition() {
    let app = TestApp::spawn().await;
    let mut conn = PgConnection::connect(&app.settings.database_url).await.unwrap();
    let partitions: i64 =
        sqlx::query_scalar("select count(*) from pg_inherits where inhparent = 'messages'::regclass").fetch_one(&mut conn).await.unwrap();
    assert_eq!(partitions, 16);
    // A generic plan, as a cached prepared statement runs: pruned when it
    // starts. (PREPARE and EXPLAIN EXECUTE: an EXPLAIN sent with parameters
    // would be planned with their values, as a custom plan.)
    let conversation = Uuid::new_v4();
    sqlx::raw_sql(
        "set plan_cache_mode = force_generic_plan; \
         prepare history(uuid, bigint, bigint) as \
         select * from messages where conversation_id = $1 and seq > $2 and seq < $3 order by seq limit 51",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "explain (analyze, costs off, timing off, summary off) execute history('{conversation}', 0, {})",
        i64::MAX
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert_eq!(plan.matches(" on messages_p").count(), 1, "{plan}");
    assert!(plan.contains("Subplans Removed: 15"), "{plan}");
}

/// The outbox's partitions, by name.
async fn outbox_partitions(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
         where i.inhparent = 'outbox'::regclass order by 1",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Outbox rows not in the partition of their id (in DEFAULT, say).
async fn misplaced_events(db: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from outbox where tableoid::regclass::text <> 'outbox_p' || (id / 10000000)")
        .fetch_one(db)
        .await
        .unwrap()
}

/// Makes the next outbox row take `id`.
async fn outbox_ids_from(db: &PgPool, id: i64) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("alter table outbox alter column id restart with {id}"))).execute(db).await.unwrap();
}

fn did(actions: &[(&str, &str)]) -> Vec<(String, String)> {
    actions.iter().map(|(a, p)| (a.to_string(), p.to_string())).collect()
}

#[tokio::test]
async fn the_outbox_upkeep_makes_partitions_ahead_and_takes_in_what_the_default_caught() {
    // No projector: the test runs the upkeep itself.
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi, Service::QueryApi]).await;
    assert_eq!(outbox_partitions(&app.db).await, ["outbox_default", "outbox_p0", "outbox_p1", "outbox_p2"]);
    let (ann, bob) = (app.register("Ann").await, app.register("Bob").await);
    let conversation = app.conversation(&ann, &bob).await;

    // Ids run past the partitions made (an upkeep that did not run): the
    // rows go to DEFAULT, and every send succeeds.
    outbox_ids_from(&app.db, 39_999_998).await;
    for i in 0..4 {
        app.send_ok(&ann, conversation, &format!("past the partitions {i}")).await;
    }
    let (in_default, past): (i64, i64) =
        sqlx::query_as("select (select count(*) from outbox_default), (select count(*) from outbox where id >= 39999998)")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(past >= 4 && in_default == past, "{in_default} of {past}");

    let done = maintain(&app.db, None).await.unwrap();
    assert_eq!(done, did(&[("created", "outbox_p3"), ("created", "outbox_p4"), ("created", "outbox_p5"), ("created", "outbox_p6")]));
    assert_eq!(misplaced_events(&app.db).await, 0, "the DEFAULT partition's rows moved into the partitions made for them");
    assert_eq!(maintain(&app.db, None).await.unwrap(), did(&[]), "nothing more to do");

    // History and sends go on over the new partitions.
    app.send_ok(&ann, conversation, "after the upkeep").await;
    let (status, page) = app.get(&format!("/conversations/{conversation}/messages?limit=10"), Some(&bob.token)).await;
    assert!(status.is_success(), "{status} {page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 5, "{page}");
}

#[tokio::test]
async fn only_published_outbox_partitions_past_the_retention_are_dropped() {
    let app = TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi, Service::QueryApi]).await;
    let (ann, bob) = (app.register("Ann").await, app.register("Bob").await);
    let conversation = app.conversation(&ann, &bob).await;
    // Events in p0, p1 and p2 (the partition being filled), p0 and p1 old.
    app.send_ok(&ann, conversation, "in p0").await;
    outbox_ids_from(&app.db, 10_000_000).await;
    app.send_ok(&ann, conversation, "in p1").await;
    outbox_ids_from(&app.db, 20_000_000).await;
    app.send_ok(&ann, conversation, "in p2").await;
    sqlx::query("update outbox set created_at = now() - interval '3 days'").execute(&app.db).await.unwrap();
    let retention = Some(Duration::from_secs(24 * 3600));
    let publish_up_to = |below: i64| {
        sqlx::query(
            "update relay_position set (txid, outbox_id) = \
             (select txid, id from outbox where id < $1 order by txid desc, id desc limit 1)",
        )
        .bind(below)
        .execute(&app.db)
    };

    // Nothing published yet (no relay runs): nothing dropped.
    assert_eq!(maintain(&app.db, retention).await.unwrap(), did(&[("created", "outbox_p3"), ("created", "outbox_p4")]));
    // p0 published: dropped; p1 old but not published: kept.
    publish_up_to(10_000_000).await.unwrap();
    assert_eq!(maintain(&app.db, retention).await.unwrap(), did(&[("dropped", "outbox_p0")]));
    // All published, p1 written recently: kept; old, dropped. p2 is being filled: kept, however old.
    publish_up_to(i64::MAX).await.unwrap();
    sqlx::query("update outbox set created_at = now() where id >= 10000000 and id < 20000000").execute(&app.db).await.unwrap();
    assert_eq!(maintain(&app.db, retention).await.unwrap(), did(&[]));
    assert_eq!(maintain(&app.db, None).await.unwrap(), did(&[]), "no retention, nothing dropped");
    sqlx::query("update outbox set created_at = now() - interval '3 days'").execute(&app.db).await.unwrap();
    assert_eq!(maintain(&app.db, retention).await.unwrap(), did(&[("dropped", "outbox_p1")]));
    assert_eq!(outbox_partitions(&app.db).await, ["outbox_default", "outbox_p2", "outbox_p3", "outbox_p4"]);
    let left: Vec<String> = sqlx::query_scalar("select payload #>> '{message,text}' from outbox where event_type = 'message_appended'")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(left, ["in p2"]);
}
