//! Get-or-create of the one conversation between two users (refused when
//! either has blocked the other).

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::block_refusal_sql;
use duet_common::domain::{Peer, ordered_pair};
use duet_common::error::ErrorCode;
use duet_common::events::DomainEvent;
use duet_common::ids::{ConversationId, UserId};
use duet_common::privacy::block_refusal;
use poem_openapi::Object;
use serde::Serialize;
use sqlx::PgPool;

use crate::appender::{now_micros, write_outbox};

/// A conversation as seen by one of its members.
#[derive(Clone, Debug, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Conversation {
    pub id: ConversationId,
    pub peer: Peer,
    /// Seq of the newest message; 0 when empty.
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    /// Last activity: the newest message, or creation.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: ConversationId,
    last_seq: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Returns the conversation between `user_id` and `peer_id`, creating it if
/// missing, and whether this call created it. Concurrent calls create one row:
/// the pair's unique constraint decides, and the losers read the winner's row.
pub async fn get_or_create(db: &PgPool, user_id: UserId, peer_id: UserId) -> Result<(Conversation, bool), ApiError> {
    if user_id == peer_id {
        return Err(ApiError::new(ErrorCode::CannotMessageSelf, "a conversation needs another user"));
    }
    // A block either way refuses the conversation, existing or not.
    let (id, name, refusal): (UserId, String, Option<String>) =
        sqlx::query_as(concat!("select id, name, ", block_refusal_sql!(), " from users where id = $2"))
            .bind(user_id)
            .bind(peer_id)
            .fetch_optional(db)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such user"))?;
    if let Some(refusal) = refusal {
        return Err(block_refusal(&refusal));
    }
    let peer = (id, name);
    let (lo, hi) = ordered_pair(user_id, peer_id);
    let now = now_micros();

    let mut tx = db.begin().await?;
    let inserted: Option<Row> = sqlx::query_as(
        "insert into conversations (id, user_lo, user_hi, created_at, updated_at) values ($1, $2, $3, $4, $4) \
         on conflict (user_lo, user_hi) do nothing \
         returning id, last_seq, created_at, updated_at",
    )
    .bind(ConversationId::new())
    .bind(lo)
    .bind(hi)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        tx.rollback().await?;
        let row: Row = sqlx::query_as("select id, last_seq, created_at, updated_at from conversations where user_lo = $1 and user_hi = $2")
            .bind(lo)
            .bind(hi)
            .fetch_one(db)
            .await?;
        return Ok((conversation(row, peer), false));
    };
    sqlx::query("insert into conversation_members (conversation_id, user_id, peer_id) values ($1, $2, $3), ($1, $3, $2)")
        .bind(row.id)
        .bind(lo)
        .bind(hi)
        .execute(&mut *tx)
        .await?;
    write_outbox(&mut tx, [DomainEvent::ConversationCreated { conversation_id: row.id, user_lo: lo, user_hi: hi, at: now }]).await?;
    tx.commit().await?;
    Ok((conversation(row, peer), true))
}

fn conversation(row: Row, (id, name): (UserId, String)) -> Conversation {
    Conversation { id: row.id, peer: Peer { id, name }, last_seq: row.last_seq, created_at: row.created_at, updated_at: row.updated_at }
}
