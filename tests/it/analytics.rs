//! The analytics views (docs/analytics.md) on known data, read on the
//! primary: days are UTC days whatever the session's time zone, and reply
//! times count only answers to the other member. The replica and the
//! analyst's login are tested in `replica.rs`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use duet_common::ids::ConversationId;
use sqlx::{Connection, PgConnection};

use crate::helpers::TestApp;

/// Moves message `seq` of `conversation` to `at`, as if it had been sent then.
async fn sent_at(app: &TestApp, conversation: ConversationId, seq: i64, at: DateTime<Utc>) {
    let moved = sqlx::query("update messages set created_at = $1 where conversation_id = $2 and seq = $3")
        .bind(at)
        .bind(conversation)
        .bind(seq)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 1);
}

/// A connection to the test's database whose session time zone is `zone`.
async fn session_in(app: &TestApp, zone: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&app.settings.database_url).await.unwrap();
    sqlx::query("select set_config('TimeZone', $1, false)").bind(zone).execute(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn a_message_just_after_utc_midnight_counts_on_that_utc_day_in_any_session_time_zone() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "hello").await;
    app.send_ok(&bob, conversation, "hi").await;
    let midnight = Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap();
    sent_at(&app, conversation, 1, midnight + Duration::minutes(20)).await;
    sent_at(&app, conversation, 2, midnight + Duration::minutes(30)).await;

    for zone in ["Pacific/Auckland", "America/Los_Angeles", "UTC"] {
        let mut conn = session_in(&app, zone).await;
        for query in [
            "select day from analytics.messages_per_day",
            "select day from analytics.active_users_per_day",
            "select day from analytics.receipt_latency_per_day",
            "select day from analytics.reply_time_per_day",
        ] {
            let days: Vec<DateTime<Utc>> = sqlx::query_scalar(query).fetch_all(&mut conn).await.unwrap();
            assert_eq!(days, vec![midnight], "{query}, in a session in {zone}");
        }
    }
}

#[tokio::test]
async fn reply_times_per_day_count_each_answer_to_the_other_member_from_the_message_it_answers() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let cat = app.register("Cat").await;
    let ab = app.conversation(&ann, &bob).await;
    let ac = app.conversation(&ann, &cat).await;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    // (conversation, sender, seconds after t0), in send order.
    let script = [
        (ab, &ann, 0),   // opens: not a reply
        (ab, &ann, 10),  // continues her own turn: not a reply
        (ac, &cat, 5),   // opens the other conversation: not a reply to Ann's ab messages
        (ab, &bob, 70),  // answers Ann's second message: 60 s
        (ab, &bob, 80),  // continues: not a reply
        (ab, &ann, 100), // answers Bob's second: 20 s
        (ac, &ann, 50),  // answers Cat: 45 s
        (ab, &bob, 400), // answers Ann: 300 s
    ];
    for (conversation, sender, secs) in script {
        let sent = app.send_ok(sender, conversation, "text").await;
        sent_at(&app, conversation, sent["seq"].as_i64().unwrap(), t0 + Duration::seconds(secs)).await;
    }

    let mut replies: Vec<f64> = sqlx::query_scalar("select reply_s from analytics.replies").fetch_all(&app.db).await.unwrap();
    replies.sort_by(f64::total_cmp);
    assert_eq!(replies, vec![20.0, 45.0, 60.0, 300.0]);
    let answered: i64 = sqlx::query_scalar(
        "select count(*) from analytics.replies r join messages a on a.id = r.answered_message_id \
         join messages m on m.id = r.message_id \
         where a.conversation_id = m.conversation_id and a.seq = m.seq - 1 and a.sender_id <> m.sender_id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(answered, 4, "each reply names the message just before it, from the other member");

    // The analyst role reads the per-day view: count, median, p90 (interpolated).
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("set local role duet_analyst").execute(&mut *tx).await.unwrap();
    let day: (DateTime<Utc>, i64, f64, f64) =
        sqlx::query_as("select day, replies, reply_p50_s, reply_p90_s from analytics.reply_time_per_day")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let (day, replies, p50, p90) = day;
    assert_eq!((day, replies), (Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap(), 4));
    assert!((p50 - 52.5).abs() < 1e-9, "median {p50}");
    assert!((p90 - 228.0).abs() < 1e-9, "p90 {p90}: 60 + 0.7 × (300 − 60)");
}
