//! Delivered and read markers: cumulative, per member, forward only.

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::events::DomainEvent;
use poem_openapi::Object;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::appender::{now_micros, write_outbox};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// Everything up to seq has reached a device of the user.
    Delivered,
    /// The user has read everything up to seq (which implies delivered).
    Read,
}

/// A member's markers after a receipt.
#[derive(Clone, Debug, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Markers {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
    /// The other member, who is told about the move.
    #[oai(skip)]
    #[serde(skip)]
    pub peer_id: Uuid,
    /// Whether this receipt moved a marker (a stale one changes nothing).
    #[oai(skip)]
    #[serde(skip)]
    pub moved: bool,
    #[oai(skip)]
    #[serde(skip)]
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Current {
    peer_id: Uuid,
    last_seq: i64,
    last_delivered_seq: i64,
    last_read_seq: i64,
}

/// Moves `user_id`'s marker in the conversation up to `seq`. A lower seq is a
/// no-op; a seq beyond the conversation's newest message is refused.
pub async fn record(db: &PgPool, user_id: Uuid, conversation_id: Uuid, seq: i64, receipt: Receipt) -> Result<Markers, ApiError> {
    if seq < 0 {
        return Err(ApiError::invalid("invalid_seq", "`seq` must not be negative"));
    }
    let mut tx = db.begin().await?;
    // The member row is locked so concurrent receipts apply one after the other.
    let current: Current = sqlx::query_as(
        "select m.peer_id, c.last_seq, m.last_delivered_seq, m.last_read_seq \
         from conversation_members m join conversations c on c.id = m.conversation_id \
         where m.conversation_id = $1 and m.user_id = $2 for update of m",
    )
    .bind(conversation_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(ApiError::conversation_not_found)?;
    if seq > current.last_seq {
        return Err(ApiError::invalid(
            "seq_out_of_range",
            format!("`seq` {seq} is beyond the conversation's last message ({})", current.last_seq),
        ));
    }
    let delivered = current.last_delivered_seq.max(seq);
    let read = match receipt {
        Receipt::Delivered => current.last_read_seq,
        Receipt::Read => current.last_read_seq.max(seq),
    };
    let now = now_micros();
    let delivered_moved = delivered > current.last_delivered_seq;
    let read_moved = read > current.last_read_seq;
    let mut markers = Markers {
        conversation_id,
        user_id,
        last_delivered_seq: delivered,
        last_read_seq: read,
        peer_id: current.peer_id,
        moved: delivered_moved || read_moved,
        at: now,
    };
    if !markers.moved {
        tx.rollback().await?;
        markers.at = now;
        return Ok(markers);
    }
    sqlx::query(
        "update conversation_members set \
           last_delivered_seq = $3, last_read_seq = $4, \
           delivered_at = case when $5 then $6 else delivered_at end, \
           read_at = case when $7 then $6 else read_at end \
         where conversation_id = $1 and user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(delivered)
    .bind(read)
    .bind(delivered_moved)
    .bind(now)
    .bind(read_moved)
    .execute(&mut *tx)
    .await?;
    let mut events = Vec::with_capacity(2);
    if delivered_moved {
        events.push(DomainEvent::DeliveredUpTo { conversation_id, user_id, seq: delivered, at: now });
    }
    if read_moved {
        events.push(DomainEvent::ReadUpTo { conversation_id, user_id, seq: read, at: now });
    }
    write_outbox(&mut tx, events).await?;
    tx.commit().await?;
    Ok(markers)
}
