//! Delivered and read markers: cumulative, per member, forward only.
//!
//! Receipts are as frequent as messages (every receiver acknowledges what
//! it got), so they go through group commit too: a batch locks its member
//! rows, applies each receipt in arrival order, updates the rows that moved
//! and writes their outbox events in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::events::DomainEvent;
use poem_openapi::Object;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::appender::{now_micros, write_outbox};
use crate::batcher::Batcher;

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

#[derive(Clone, Copy, Debug)]
pub struct ReceiptRequest {
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub receipt: Receipt,
}

/// Handle to the receipt writers. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptWriter {
    batcher: Batcher<ReceiptRequest, Markers>,
}

impl ReceiptWriter {
    pub fn start(db: PgPool, writers: usize, max_batch: usize) -> Self {
        let batcher = Batcher::start(writers, max_batch, move |requests| {
            let db = db.clone();
            async move { record_batch_or_split(&db, &requests).await }
        });
        ReceiptWriter { batcher }
    }

    /// Moves the user's marker up to `seq`. A lower seq is a no-op; a seq
    /// beyond the conversation's newest message is refused.
    pub async fn record(&self, request: ReceiptRequest) -> Result<Markers, ApiError> {
        if request.seq < 0 {
            return Err(ApiError::invalid("invalid_seq", "`seq` must not be negative"));
        }
        self.batcher.submit(request.conversation_id, request).await
    }
}

async fn record_batch_or_split(db: &PgPool, requests: &[ReceiptRequest]) -> Vec<Result<Markers, ApiError>> {
    match record_batch(db, requests).await {
        Ok(outcomes) => outcomes,
        Err(e) if requests.len() == 1 => vec![Err(e.into())],
        Err(e) => {
            tracing::warn!(error = %e, size = requests.len(), "batch receipt failed; recording one by one");
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                outcomes.push(match record_batch(db, std::slice::from_ref(request)).await {
                    Ok(mut one) => one.pop().expect("one outcome per request"),
                    Err(e) => Err(e.into()),
                });
            }
            outcomes
        }
    }
}

#[derive(sqlx::FromRow)]
struct Member {
    conversation_id: Uuid,
    user_id: Uuid,
    peer_id: Uuid,
    last_seq: i64,
    last_delivered_seq: i64,
    last_read_seq: i64,
}

/// Where a member's markers started and ended within the batch.
struct Moved {
    delivered_from: i64,
    read_from: i64,
}

async fn record_batch(db: &PgPool, requests: &[ReceiptRequest]) -> Result<Vec<Result<Markers, ApiError>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let (conversations, users): (Vec<Uuid>, Vec<Uuid>) = requests.iter().map(|r| (r.conversation_id, r.user_id)).unzip();
    // Member rows are locked (in a fixed order) so concurrent batches apply one after the other.
    let mut members: HashMap<(Uuid, Uuid), Member> = sqlx::query_as::<_, Member>(
        "select m.conversation_id, m.user_id, m.peer_id, c.last_seq, m.last_delivered_seq, m.last_read_seq \
         from conversation_members m join conversations c on c.id = m.conversation_id \
         where (m.conversation_id, m.user_id) in (select * from unnest($1::uuid[], $2::uuid[])) \
         order by m.conversation_id, m.user_id for update of m",
    )
    .bind(&conversations)
    .bind(&users)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|m| ((m.conversation_id, m.user_id), m))
    .collect();

    let now = now_micros();
    let mut moved: HashMap<(Uuid, Uuid), Moved> = HashMap::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let Some(member) = members.get_mut(&(request.conversation_id, request.user_id)) else {
            outcomes.push(Err(ApiError::conversation_not_found()));
            continue;
        };
        if request.seq > member.last_seq {
            outcomes.push(Err(ApiError::invalid(
                "seq_out_of_range",
                format!("`seq` {} is beyond the conversation's last message ({})", request.seq, member.last_seq),
            )));
            continue;
        }
        let delivered = member.last_delivered_seq.max(request.seq);
        let read = match request.receipt {
            Receipt::Delivered => member.last_read_seq,
            Receipt::Read => member.last_read_seq.max(request.seq),
        };
        let changed = delivered > member.last_delivered_seq || read > member.last_read_seq;
        if changed {
            moved
                .entry((member.conversation_id, member.user_id))
                .or_insert(Moved { delivered_from: member.last_delivered_seq, read_from: member.last_read_seq });
            member.last_delivered_seq = delivered;
            member.last_read_seq = read;
        }
        outcomes.push(Ok(Markers {
            conversation_id: member.conversation_id,
            user_id: member.user_id,
            last_delivered_seq: delivered,
            last_read_seq: read,
            peer_id: member.peer_id,
            moved: changed,
            at: now,
        }));
    }
    if moved.is_empty() {
        tx.rollback().await?;
        return Ok(outcomes);
    }

    let mut rows: (Vec<Uuid>, Vec<Uuid>, Vec<i64>, Vec<i64>, Vec<bool>, Vec<bool>) = Default::default();
    let mut events = Vec::new();
    for (key, from) in &moved {
        let member = &members[key];
        let delivered_moved = member.last_delivered_seq > from.delivered_from;
        let read_moved = member.last_read_seq > from.read_from;
        rows.0.push(member.conversation_id);
        rows.1.push(member.user_id);
        rows.2.push(member.last_delivered_seq);
        rows.3.push(member.last_read_seq);
        rows.4.push(delivered_moved);
        rows.5.push(read_moved);
        let (conversation_id, user_id) = *key;
        if delivered_moved {
            events.push(DomainEvent::DeliveredUpTo { conversation_id, user_id, seq: member.last_delivered_seq, at: now });
        }
        if read_moved {
            events.push(DomainEvent::ReadUpTo { conversation_id, user_id, seq: member.last_read_seq, at: now });
        }
    }
    sqlx::query(
        "update conversation_members m set \
           last_delivered_seq = v.delivered, last_read_seq = v.read, \
           delivered_at = case when v.delivered_moved then $7 else m.delivered_at end, \
           read_at = case when v.read_moved then $7 else m.read_at end \
         from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::int8[], $5::bool[], $6::bool[]) \
           as v(conversation_id, user_id, delivered, read, delivered_moved, read_moved) \
         where m.conversation_id = v.conversation_id and m.user_id = v.user_id",
    )
    .bind(&rows.0)
    .bind(&rows.1)
    .bind(&rows.2)
    .bind(&rows.3)
    .bind(&rows.4)
    .bind(&rows.5)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    write_outbox(&mut tx, events).await?;
    tx.commit().await?;
    Ok(outcomes)
}
