//! The push jobs' SQL: devices, unread counts, collapse rows and delivery claims.
//!
//! Unread counts come from PostgreSQL (the messages after each member's read
//! marker, served by `messages_receiver_idx`). The projector's Redis unread
//! projection can replace `badge` once it exists.

use duet_common::domain::MessageType;
use duet_common::ids::{ConversationId, DeviceId, UserId};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct Device {
    pub id: DeviceId,
    pub platform: String,
    pub token: String,
}

pub async fn devices(db: &PgPool, user_id: UserId) -> sqlx::Result<Vec<Device>> {
    sqlx::query_as("select id, platform, token from device_tokens where user_id = $1 order by id").bind(user_id).fetch_all(db).await
}

/// The user's total unread: over their conversations, the peer's messages after their read marker.
pub async fn badge(db: &PgPool, user_id: UserId) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from unread_messages where user_id = $1").bind(user_id).fetch_one(db).await
}

/// The newest unread message of a conversation for its receiver, as much of it as a notification may tell.
#[derive(Debug, sqlx::FromRow)]
pub struct Newest {
    pub seq: i64,
    #[sqlx(rename = "type")]
    pub kind: MessageType,
    /// The text, or an attachment's caption.
    pub text: Option<String>,
}

/// The newest unread message of the conversation for the user.
pub async fn newest_unread(db: &PgPool, user_id: UserId, conversation_id: ConversationId) -> sqlx::Result<Option<Newest>> {
    sqlx::query_as(
        "select u.seq, m.type, u.text from unread_messages u join messages m on m.id = u.message_id \
         where u.user_id = $1 and u.conversation_id = $2 order by u.seq desc limit 1",
    )
    .bind(user_id)
    .bind(conversation_id)
    .fetch_optional(db)
    .await
}

/// Ends the notification `episode`, so the next message notifies again.
pub async fn end_episode(db: &PgPool, user_id: UserId, conversation_id: ConversationId, episode: Uuid) -> sqlx::Result<()> {
    sqlx::query("delete from push_collapse where user_id = $1 and conversation_id = $2 and episode = $3")
        .bind(user_id)
        .bind(conversation_id)
        .bind(episode)
        .execute(db)
        .await
        .map(|_| ())
}

/// Claims the right to send `episode` to `device`; false if any attempt
/// already claimed it (sent, or died while sending).
pub async fn claim(db: &PgPool, episode: Uuid, device_id: DeviceId) -> sqlx::Result<bool> {
    let done = sqlx::query("insert into push_deliveries (episode, device_id, state) values ($1, $2, 'sending') on conflict do nothing")
        .bind(episode)
        .bind(device_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_sent(db: &PgPool, episode: Uuid, device_id: DeviceId) -> sqlx::Result<()> {
    sqlx::query("update push_deliveries set state = 'sent', updated_at = now() where episode = $1 and device_id = $2")
        .bind(episode)
        .bind(device_id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Gives a claim back after the provider answered that it did not deliver.
pub async fn release(db: &PgPool, episode: Uuid, device_id: DeviceId) -> sqlx::Result<()> {
    sqlx::query("delete from push_deliveries where episode = $1 and device_id = $2 and state = 'sending'")
        .bind(episode)
        .bind(device_id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Deletes a token the provider rejected (unless it was re-registered meanwhile).
pub async fn delete_device(db: &PgPool, device: &Device) -> sqlx::Result<()> {
    sqlx::query("delete from device_tokens where id = $1 and token = $2").bind(device.id).bind(&device.token).execute(db).await.map(|_| ())
}

/// Forgets delivery claims older than a week: a job is never retried that late.
pub async fn prune_deliveries(db: &PgPool) -> sqlx::Result<u64> {
    sqlx::query("delete from push_deliveries where updated_at < now() - interval '7 days'").execute(db).await.map(|r| r.rows_affected())
}
