//! Reactions (one emoji per member per message: set, change, remove) and
//! delete-for-me (a message hidden from one member's history and sync).
//!
//! Both follow [`crate::changes`]: one transaction under the conversation
//! lock that moves the change counter and writes the outbox event. Either
//! member reacts to any message that is not a tombstone; a block between
//! them refuses a reaction as it refuses a send. Hiding is the caller's
//! own business: no block stops it, and only the caller hears of it.

use duet_common::ApiError;
use duet_common::error::ErrorCode;
use duet_common::events::DomainEvent;
use duet_common::ids::{ConversationId, MessageId, UserId};
use duet_common::protocol::ChangeKind;
use sqlx::PgPool;

use crate::appender::now_micros;
use crate::changes::{Changed, lock};

/// A message hidden for one user.
#[derive(Clone, Copy, Debug)]
pub struct Hidden {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// The conversation's change position of the hide.
    pub change_seq: i64,
}

/// Sets (`Some`) or removes (`None`) the caller's reaction. Setting the
/// reaction the caller already has, or removing none, changes nothing and
/// answers the message as it is. `emoji` was checked by the caller
/// (`duet_common::reactions::validate_emoji`).
pub async fn react(
    db: &PgPool,
    user: UserId,
    conversation_id: ConversationId,
    message_id: MessageId,
    emoji: Option<String>,
) -> Result<Changed, ApiError> {
    let mut locked = lock(db, user, conversation_id).await?;
    let message = locked.message(message_id).await?;
    if message.deleted_at.is_some() {
        return Err(ApiError::new(ErrorCode::MessageDeleted, "the message was unsent"));
    }
    locked.not_blocked(user).await?;
    let current: Option<String> = sqlx::query_scalar("select emoji from message_reactions where message_id = $1 and user_id = $2")
        .bind(message_id)
        .bind(user)
        .fetch_optional(&mut *locked.tx)
        .await?;
    if current == emoji {
        return Ok(Changed { message, change: ChangeKind::Reaction, fresh: false });
    }
    let change = locked.next_change().await?;
    match &emoji {
        Some(emoji) => {
            sqlx::query(
                "insert into message_reactions (message_id, user_id, conversation_id, emoji, created_at) values ($1, $2, $3, $4, $5) \
                 on conflict (message_id, user_id) do update set emoji = excluded.emoji, created_at = excluded.created_at",
            )
            .bind(message_id)
            .bind(user)
            .bind(conversation_id)
            .bind(emoji)
            .bind(now_micros())
            .execute(&mut *locked.tx)
            .await?;
        }
        None => {
            sqlx::query("delete from message_reactions where message_id = $1 and user_id = $2")
                .bind(message_id)
                .bind(user)
                .execute(&mut *locked.tx)
                .await?;
        }
    }
    sqlx::query("update messages set change_seq = $2 where conversation_id = $3 and id = $1")
        .bind(message_id)
        .bind(change)
        .bind(conversation_id)
        .execute(&mut *locked.tx)
        .await?;
    let message = locked.message(message_id).await?;
    locked.commit(DomainEvent::ReactionChanged { conversation_id, message_id, user_id: user, emoji, change_seq: change }).await?;
    Ok(Changed { message, change: ChangeKind::Reaction, fresh: true })
}

/// Hides a message of the conversation from the caller (delete for me).
/// Hiding it again answers the first hide.
pub async fn hide(db: &PgPool, user: UserId, conversation_id: ConversationId, message_id: MessageId) -> Result<(Hidden, bool), ApiError> {
    let mut locked = lock(db, user, conversation_id).await?;
    let seq = locked.message(message_id).await?.seq;
    let earlier: Option<i64> = sqlx::query_scalar("select change_seq from message_hides where user_id = $1 and message_id = $2")
        .bind(user)
        .bind(message_id)
        .fetch_optional(&mut *locked.tx)
        .await?;
    if let Some(change_seq) = earlier {
        return Ok((Hidden { conversation_id, message_id, change_seq }, false));
    }
    let change_seq = locked.next_change().await?;
    sqlx::query("insert into message_hides (user_id, message_id, conversation_id, change_seq, created_at) values ($1, $2, $3, $4, $5)")
        .bind(user)
        .bind(message_id)
        .bind(conversation_id)
        .bind(change_seq)
        .bind(now_micros())
        .execute(&mut *locked.tx)
        .await?;
    locked.commit(DomainEvent::MessageHidden { conversation_id, user_id: user, message_id, seq, change_seq }).await?;
    Ok((Hidden { conversation_id, message_id, change_seq }, true))
}
