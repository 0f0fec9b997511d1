//! A message's conversation must exist, checked per statement
//! (migrations/0009) with everything the foreign key it replaced gave.

use duet_common::ids::{ConversationId, UserId};
use std::time::Duration;

use duet::Service;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use uuid::Uuid;

use crate::helpers::{TestApp, fresh_settings};
use crate::read_side_support::eventually;

const FK: &str = "messages_conversation_id_fkey";

/// Inserts messages numbered `seqs` into `conversation`, as one statement.
fn insert(conversation: ConversationId, sender: UserId, receiver: UserId, seqs: &[i64]) -> Query<'static, Postgres, PgArguments> {
    sqlx::query(
        "insert into messages (id, conversation_id, seq, sender_id, receiver_id, text, client_msg_id) \
         select gen_random_uuid(), $1, s, $2, $3, 'raw', 'raw-' || gen_random_uuid() from unnest($4::int8[]) s",
    )
    .bind(conversation)
    .bind(sender)
    .bind(receiver)
    .bind(seqs.to_vec())
}

fn violated(err: sqlx::Error) -> (String, String) {
    let db = err.as_database_error().expect("a database error");
    (db.code().unwrap_or_default().into_owned(), db.constraint().unwrap_or_default().to_owned())
}

async fn spawn() -> TestApp {
    TestApp::spawn_settings(fresh_settings(), &[Service::CommandApi]).await
}

#[tokio::test]
async fn a_message_for_a_missing_conversation_fails_its_whole_statement() {
    let app = spawn().await;
    let (ann, bob) = (app.register("Ann").await, app.register("Bob").await);
    let conversation = app.conversation(&ann, &bob).await;

    let missing = ConversationId::new();
    let err = insert(missing, ann.id, bob.id, &[1]).execute(&app.db).await.unwrap_err();
    assert_eq!(violated(err), ("23503".into(), FK.into()));

    // A statement mixing a good conversation and a missing one stores nothing.
    let err = sqlx::query(
        "insert into messages (id, conversation_id, seq, sender_id, receiver_id, text, client_msg_id) \
         values (gen_random_uuid(), $1, 1, $3, $4, 'ok', 'mixed-1'), (gen_random_uuid(), $2, 1, $3, $4, 'bad', 'mixed-2')",
    )
    .bind(conversation)
    .bind(missing)
    .bind(ann.id)
    .bind(bob.id)
    .execute(&app.db)
    .await
    .unwrap_err();
    assert_eq!(violated(err), ("23503".into(), FK.into()));
    let stored: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 0);

    // Moving a stored message to a missing conversation is refused too.
    insert(conversation, ann.id, bob.id, &[1, 2]).execute(&app.db).await.unwrap();
    let err = sqlx::query("update messages set conversation_id = $1").bind(missing).execute(&app.db).await.unwrap_err();
    assert_eq!(violated(err), ("23503".into(), FK.into()));
}

#[tokio::test]
async fn a_conversation_with_messages_can_be_neither_deleted_nor_rekeyed() {
    let app = spawn().await;
    let (ann, bob) = (app.register("Ann").await, app.register("Bob").await);
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "keep me").await;
    // Only the messages still refer to it.
    sqlx::query("delete from conversation_members where conversation_id = $1").bind(conversation).execute(&app.db).await.unwrap();

    let err = sqlx::query("delete from conversations where id = $1").bind(conversation).execute(&app.db).await.unwrap_err();
    assert_eq!(violated(err), ("23503".into(), FK.into()));
    let err = sqlx::query("update conversations set id = $2 where id = $1")
        .bind(conversation)
        .bind(Uuid::now_v7())
        .execute(&app.db)
        .await
        .unwrap_err();
    assert_eq!(violated(err), ("23503".into(), FK.into()));

    // Without messages it goes.
    sqlx::query("delete from messages where conversation_id = $1").bind(conversation).execute(&app.db).await.unwrap();
    sqlx::query("delete from conversations where id = $1").bind(conversation).execute(&app.db).await.unwrap();
}

#[tokio::test]
async fn a_delete_waits_for_an_insert_in_flight_and_then_sees_its_messages() {
    let app = spawn().await;
    let (ann, bob) = (app.register("Ann").await, app.register("Bob").await);
    let conversation = app.conversation(&ann, &bob).await;
    sqlx::query("delete from conversation_members where conversation_id = $1").bind(conversation).execute(&app.db).await.unwrap();

    // The insert has run (and locked the conversation) but not committed.
    let mut inserting = app.db.begin().await.unwrap();
    insert(conversation, ann.id, bob.id, &[1]).execute(&mut *inserting).await.unwrap();

    let db = app.db.clone();
    let delete = tokio::spawn(async move { sqlx::query("delete from conversations where id = $1").bind(conversation).execute(&db).await });
    eventually("the delete waiting on the insert's lock", Duration::from_secs(20), || async {
        let waiting: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity where datname = current_database() \
             and wait_event_type = 'Lock' and query like 'delete from conversations%')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        waiting.then_some(())
    })
    .await;
    assert!(!delete.is_finished(), "the delete went ahead of an insert still running");
    inserting.commit().await.unwrap();

    let err = delete.await.unwrap().unwrap_err();
    assert_eq!(violated(err), ("23503".into(), FK.into()));
    let left: i64 = sqlx::query_scalar("select count(*) from messages m join conversations c on c.id = m.conversation_id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 1);
}
