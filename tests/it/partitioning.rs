//! `messages` partitioned by conversation (migrations/0016_partitioned_messages.sql,
//! docs/decisions/0009-partitioning.md): a database with data at 0015 is
//! migrated, keeps every row, and goes on appending with the right seqs.

use duet_common::db::MIGRATOR;
use sqlx::{Connection, PgConnection};
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
    append(conn, with_cat, ann, "k1", "hello cat", None).await;
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
    let per_day: i64 = sqlx::query_scalar("select messages from analytics.messages_per_day").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(per_day, 4, "the analytics views read the new table");

    // Sends go on: the next seq of each conversation, and a resend replays.
    assert_eq!(append(&mut conn, seeded.with_bob, seeded.ann, "k3", "again", None).await.1, 4);
    assert_eq!(append(&mut conn, seeded.with_cat, seeded.ann, "k2", "again", None).await.1, 2);
    assert_eq!(append(&mut conn, seeded.with_bob, seeded.ann, "k1", "resent", None).await, (seeded.first, 1));
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
    // A generic plan, as a cached prepared statement runs: pruned when it starts.
    sqlx::raw_sql("set plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "explain (analyze, costs off, timing off, summary off) \
         select * from messages where conversation_id = $1 and seq > $2 and seq < $3 order by seq limit 51",
    )
    .bind(Uuid::new_v4())
    .bind(0i64)
    .bind(i64::MAX)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert_eq!(plan.matches(" on messages_p").count(), 1, "{plan}");
    assert!(plan.contains("Subplans Removed: 15"), "{plan}");
}
