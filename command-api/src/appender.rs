//! The message append path, built for group commit.
//!
//! Appends go to one of a few writer tasks, chosen by conversation, so a
//! conversation's appends are handled in arrival order. A writer drains
//! whatever is queued (no timer: under light load a batch is one message)
//! and appends the batch in one transaction: lock the conversations, settle
//! idempotency, assign gap-free seqs, insert the messages, move `last_seq`,
//! write one outbox event per message, commit once. Each caller is answered
//! only after that commit.
//!
//! A retry with the same `(sender, clientMsgId)` gets the stored message back,
//! with `created = false`, even inside one batch. If the batch transaction
//! fails as a whole, each request is retried in a transaction of its own, so
//! one bad row fails alone.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::db::is_constraint_violation;
use duet_common::domain::{Message, NewMessage};
use duet_common::message_columns;
use duet_common::events::{DomainEvent, Envelope};
use duet_common::settings::{AppendMode, Settings};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::batcher::Batcher;

/// A validated message to append.
#[derive(Debug)]
pub struct AppendRequest {
    pub sender_id: Uuid,
    pub conversation_id: Uuid,
    pub message: NewMessage,
}

/// The outcome of an append: the stored message, and whether this call stored it.
#[derive(Clone, Debug)]
pub struct Appended {
    pub message: Message,
    /// False when an earlier call with the same `clientMsgId` stored it.
    pub created: bool,
}

/// Handle to the writers. Cheap to clone.
#[derive(Clone)]
pub struct Appender {
    db: PgPool,
    mode: AppendMode,
    batcher: Batcher<AppendRequest, Appended>,
}

impl Appender {
    /// Starts the writer tasks.
    pub fn start(db: PgPool, settings: &Settings) -> Self {
        let pool = db.clone();
        let batcher = Batcher::start(settings.append_writers, settings.append_max_batch, move |requests| {
            let pool = pool.clone();
            async move { append_batch_or_split(&pool, &requests).await }
        });
        Appender { db, mode: settings.append_mode, batcher }
    }

    /// Appends one message; returns after it is committed (or refused).
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, ApiError> {
        if self.mode == AppendMode::Single {
            return append_alone(&self.db, &request).await;
        }
        self.batcher.submit(request.conversation_id, request).await
    }
}

/// Appends the batch in one transaction, or, if that fails, each alone.
async fn append_batch_or_split(db: &PgPool, requests: &[AppendRequest]) -> Vec<Result<Appended, ApiError>> {
    match append_batch(db, requests).await {
        Ok(outcomes) => outcomes,
        Err(e) if requests.len() == 1 => {
            vec![retry_alone(db, &requests[0], e).await]
        }
        Err(e) => {
            tracing::warn!(error = %e, size = requests.len(), "batch append failed; appending one by one");
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                outcomes.push(append_alone(db, request).await);
            }
            outcomes
        }
    }
}

async fn append_alone(db: &PgPool, request: &AppendRequest) -> Result<Appended, ApiError> {
    match append_batch(db, std::slice::from_ref(request)).await {
        Ok(mut outcomes) => outcomes.pop().expect("one outcome per request"),
        Err(e) => retry_alone(db, request, e).await,
    }
}

/// A lone append that lost a race on `(sender, clientMsgId)` to another
/// process finds the winner's row on the next try; anything else is final.
async fn retry_alone(db: &PgPool, request: &AppendRequest, err: sqlx::Error) -> Result<Appended, ApiError> {
    if is_constraint_violation(&err, "messages_sender_client_msg_id_key") {
        return match append_batch(db, std::slice::from_ref(request)).await {
            Ok(mut outcomes) => outcomes.pop().expect("one outcome per request"),
            Err(e) => Err(e.into()),
        };
    }
    Err(err.into())
}

#[derive(sqlx::FromRow)]
struct LockedConversation {
    id: Uuid,
    user_lo: Uuid,
    user_hi: Uuid,
    last_seq: i64,
}

/// One transaction for the whole batch. `Err` means nothing was stored;
/// `Ok` holds each request's own outcome.
async fn append_batch(db: &PgPool, requests: &[AppendRequest]) -> Result<Vec<Result<Appended, ApiError>>, sqlx::Error> {
    let mut tx = db.begin().await?;

    let mut conversation_ids: Vec<Uuid> = requests.iter().map(|r| r.conversation_id).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    // Locked in id order, so concurrent batches cannot deadlock.
    let mut conversations: HashMap<Uuid, LockedConversation> = sqlx::query_as::<_, LockedConversation>(
        "select id, user_lo, user_hi, last_seq from conversations where id = any($1) order by id for update",
    )
    .bind(&conversation_ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|c| (c.id, c))
    .collect();

    // Stored messages with the same idempotency keys. Read after the locks:
    // a concurrent append to the same conversation has committed by now.
    let (senders, client_ids): (Vec<Uuid>, Vec<&str>) =
        requests.iter().map(|r| (r.sender_id, r.message.client_msg_id.as_str())).unzip();
    let stored: HashMap<(Uuid, String), Message> = sqlx::query_as::<_, Message>(concat!(
        "select ",
        message_columns!(),
        " from messages where (sender_id, client_msg_id) in (select * from unnest($1::uuid[], $2::text[]))"
    ))
    .bind(&senders)
    .bind(&client_ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|m| ((m.sender_id, m.client_msg_id.clone()), m))
    .collect();

    let now = now_micros();
    let mut fresh: Vec<Message> = Vec::new();
    let mut fresh_by_key: HashMap<(Uuid, &str), usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let Some(conversation) = conversations.get_mut(&request.conversation_id) else {
            outcomes.push(Err(ApiError::conversation_not_found()));
            continue;
        };
        let receiver_id = if request.sender_id == conversation.user_lo {
            conversation.user_hi
        } else if request.sender_id == conversation.user_hi {
            conversation.user_lo
        } else {
            outcomes.push(Err(ApiError::conversation_not_found()));
            continue;
        };
        let key = (request.sender_id, request.message.client_msg_id.as_str());
        let earlier = stored
            .get(&(key.0, key.1.to_owned()))
            .or_else(|| fresh_by_key.get(&key).map(|&i| &fresh[i]));
        if let Some(earlier) = earlier {
            outcomes.push(replay(request, earlier));
            continue;
        }
        conversation.last_seq += 1;
        let message = Message {
            id: Uuid::now_v7(),
            conversation_id: conversation.id,
            seq: conversation.last_seq,
            sender_id: request.sender_id,
            receiver_id,
            kind: request.message.kind,
            text: request.message.text.clone(),
            payload: request.message.payload.clone(),
            client_msg_id: request.message.client_msg_id.clone(),
            created_at: now,
        };
        fresh_by_key.insert(key, fresh.len());
        outcomes.push(Ok(Appended { message: message.clone(), created: true }));
        fresh.push(message);
    }

    if !fresh.is_empty() {
        let touched: Vec<&LockedConversation> =
            conversations.values().filter(|c| fresh.iter().any(|m| m.conversation_id == c.id)).collect();
        let (types, event_conversations, payloads) =
            outbox_rows(fresh.iter().map(|m| DomainEvent::MessageAppended { message: m.clone() }))?;
        // One round trip for the three writes: under load every round trip
        // holds the conversations' locks a little longer.
        sqlx::query(
            "with inserted as ( \
               insert into messages (id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at) \
               select * from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::jsonb[], $9::text[], $10::timestamptz[]) \
               returning 1 \
             ), moved as ( \
               update conversations c set last_seq = v.last_seq, updated_at = $13 \
               from unnest($11::uuid[], $12::int8[]) as v(id, last_seq) where c.id = v.id \
               returning 1 \
             ) \
             insert into outbox (event_type, conversation_id, payload) \
             select * from unnest($14::text[], $15::uuid[], $16::jsonb[])",
        )
        .bind(fresh.iter().map(|m| m.id).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.conversation_id).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.sender_id).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.receiver_id).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.text.as_deref()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.payload.clone()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.client_msg_id.as_str()).collect::<Vec<_>>())
        .bind(fresh.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .bind(touched.iter().map(|c| c.id).collect::<Vec<_>>())
        .bind(touched.iter().map(|c| c.last_seq).collect::<Vec<_>>())
        .bind(now)
        .bind(&types)
        .bind(&event_conversations)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// A retry of a stored message: the same content returns it; other content
/// means the client reused an id, which must not be hidden.
fn replay(request: &AppendRequest, earlier: &Message) -> Result<Appended, ApiError> {
    if earlier.conversation_id == request.conversation_id && request.message.same_content(earlier) {
        Ok(Appended { message: earlier.clone(), created: false })
    } else {
        Err(ApiError::conflict(
            "idempotency_conflict",
            format!(
                "clientMsgId `{}` was already used for message {} with other content",
                request.message.client_msg_id, earlier.id
            ),
        ))
    }
}

/// Writes domain events to the outbox inside the caller's transaction.
pub async fn write_outbox(
    tx: &mut Transaction<'_, Postgres>,
    events: impl IntoIterator<Item = DomainEvent>,
) -> Result<(), sqlx::Error> {
    let (types, conversations, payloads) = outbox_rows(events)?;
    sqlx::query(
        "insert into outbox (event_type, conversation_id, payload) \
         select * from unnest($1::text[], $2::uuid[], $3::jsonb[])",
    )
    .bind(&types)
    .bind(&conversations)
    .bind(&payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The outbox columns of `events`, as arrays for `unnest`.
fn outbox_rows(
    events: impl IntoIterator<Item = DomainEvent>,
) -> Result<(Vec<&'static str>, Vec<Uuid>, Vec<serde_json::Value>), sqlx::Error> {
    let mut rows = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        rows.0.push(event.event_type());
        rows.1.push(event.conversation_id());
        let payload = serde_json::to_value(Envelope::from(event))
            .context("Failed to encode an outbox event")
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
        rows.2.push(payload);
    }
    Ok(rows)
}

/// Now, at PostgreSQL's precision, so a stored message reads back identical.
pub fn now_micros() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now is representable")
}
