//! Cached plans of the write functions stay key lookups, whatever the
//! statistics said when they were made (migrations/0008).

use std::time::Duration;

use duet::Service;

use crate::helpers::{TestApp, fresh_settings};
use crate::read_side_support::eventually;

/// (scans, tuples read) of the idempotency key `(conversation_id,
/// sender_id, client_msg_id)` over all partitions, as flushed so far.
async fn key_index_reads(app: &TestApp) -> (i64, i64) {
    sqlx::query_as(
        "select coalesce(sum(idx_scan), 0)::int8, coalesce(sum(idx_tup_read), 0)::int8 from pg_stat_user_indexes \
         where indexrelid in (select inhrelid from pg_inherits \
                              where inhparent = 'messages_conversation_sender_client_msg_id_key'::regclass)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_append_planned_while_messages_was_empty_still_probes_the_idempotency_key() {
    // One append writer, so the session that plans `duet_append` (the
    // writer's own connection) is the one that appends.
    let mut settings = fresh_settings();
    settings.append_writers = 1;
    let app = TestApp::spawn_settings(settings, &[Service::CommandApi]).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;

    // Statistics that say `messages` is empty, kept while it grows (no
    // autovacuum on any partition); the first send plans against them.
    sqlx::raw_sql(
        "do $$ declare p regclass; begin \
           for p in select inhrelid::regclass from pg_inherits where inhparent = 'messages'::regclass loop \
             execute format('alter table %s set (autovacuum_enabled = false)', p); \
           end loop; end $$",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("analyze messages").execute(&app.db).await.unwrap();
    app.send_ok(&ann, conversation, "planned on an empty table").await;
    const GROWN: i64 = 5_000;
    sqlx::query(
        "insert into messages (id, conversation_id, seq, sender_id, receiver_id, text, client_msg_id) \
         select gen_random_uuid(), $1, g, $2, $3, 'bulk', 'bulk-' || g from generate_series(2, $4::int8 + 1) g",
    )
    .bind(conversation)
    .bind(ann.id)
    .bind(bob.id)
    .bind(GROWN)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("update conversations set last_seq = $2::int8 + 1 where id = $1")
        .bind(conversation)
        .bind(GROWN)
        .execute(&app.db)
        .await
        .unwrap();

    const SENDS: i64 = 5;
    for i in 0..SENDS {
        let message = app.send_ok(&ann, conversation, &format!("after growth {i}")).await;
        assert_eq!(message["seq"], GROWN + 2 + i);
    }
    // Every append scans this index at least once; wait until all are counted.
    let (_, tuples) = eventually("the appends' index statistics", Duration::from_secs(20), || async {
        let (scans, tuples) = key_index_reads(&app).await;
        (scans > SENDS).then_some((scans, tuples))
    })
    .await;
    // A probe reads at most one entry per request; a walk reads all of them per call.
    assert!(tuples < GROWN, "the appends read {tuples} index entries: the key lookup became a scan");
}
