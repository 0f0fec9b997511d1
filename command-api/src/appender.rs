//! The message append path, built for group commit.
//!
//! Appends go to one of a few writer tasks, chosen by conversation, so a
//! conversation's appends are handled in arrival order. A writer drains
//! whatever is queued (no timer: under light load a batch is one message)
//! and appends the batch in one transaction, one round trip to PostgreSQL
//! (the `duet_append` function): lock the conversations, settle idempotency,
//! assign gap-free seqs, insert the messages, move `last_seq`, write one
//! outbox event per message, commit once. Each caller is answered only after
//! that commit.
//!
//! A retry with the same `(sender, clientMsgId)` gets the stored message back,
//! with `created = false`, even inside one batch (where it settles to the
//! first send of its key without a round trip of its own). If the batch transaction
//! fails as a whole, each request is retried in a transaction of its own, so
//! one bad row fails alone.
//!
//! A block between the pair (either way) refuses a new message inside the
//! same call, two primary-key probes per request; a sender's first message
//! to a receiver records them as a contact (presence visibility). A reply
//! is checked (and its preview read) in the same call, one primary-key probe.
//!
//! After the commit the writer hands the whole batch to live fan-out
//! (`duet_common::fanout`): this node's sessions get it at once, the Redis
//! publish for other nodes is queued in order behind the writer's earlier
//! batches, and the callers are answered without waiting for it. Fan-out
//! is batched like the commit, and Redis is off the commit's turn.

use duet_common::error::ErrorCode;
use duet_common::ids::{ConversationId, MessageId, UserId};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use duet_common::db::{Batch, Lane, is_constraint_violation};
use duet_common::domain::{Message, MessageType, ReplyPreview, ValidMessage};
use duet_common::events::{DomainEvent, EVENT_VERSION, Envelope};
use duet_common::fanout::{Event, Publisher};
use duet_common::privacy::block_refusal;
use duet_common::settings::{AppendMode, Settings};
use duet_common::{ApiError, AppContext};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::batcher::{BatchFamilies, BatchHandler, Batcher};

/// A validated message to append.
#[derive(Debug)]
pub struct AppendRequest {
    pub sender_id: UserId,
    pub conversation_id: ConversationId,
    pub message: ValidMessage,
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
    ctx: AppContext,
    mode: AppendMode,
    batcher: Batcher<AppendRequest, Appended>,
}

impl Appender {
    /// Starts the writer tasks.
    pub fn start(ctx: &AppContext, metrics: &BatchFamilies) -> Self {
        let settings: &Settings = &ctx.settings;
        let writers = (0..settings.append_writers).map(|_| AppendWriter {
            ctx: ctx.clone(),
            lane: Lane::new(ctx.db.clone()).counting_splits(metrics.splits("append")),
            publisher: ctx.live.publisher(),
        });
        let batcher = Batcher::start("append", metrics, writers, settings.append_max_batch, Duration::ZERO);
        Appender { ctx: ctx.clone(), mode: settings.append_mode, batcher }
    }

    /// Appends one message; returns after it is committed (or refused) and
    /// handed to live fan-out.
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, ApiError> {
        if self.mode == AppendMode::Single {
            // Each caller on its own, the publish too (so in no set order).
            let outcome = Lane::new(self.ctx.db.clone())
                .run_or_split(&Appends, std::slice::from_ref(&request))
                .await
                .pop()
                .expect("one outcome per request");
            self.ctx.live.spawn_publish(announce(&self.ctx, std::slice::from_ref(&outcome)));
            return outcome;
        }
        self.batcher.submit(request.conversation_id, request).await
    }
}

/// One append writer, on a connection of its own, with its own ordered way
/// out to live fan-out.
struct AppendWriter {
    ctx: AppContext,
    lane: Lane,
    publisher: Publisher,
}

impl BatchHandler for AppendWriter {
    type Request = AppendRequest;
    type Response = Appended;

    async fn handle(&mut self, requests: &[AppendRequest]) -> Vec<Result<Appended, ApiError>> {
        let outcomes = self.lane.run_or_split(&Appends, requests).await;
        self.publisher.publish(announce(&self.ctx, &outcomes)).await;
        outcomes
    }
}

/// Wakes this process's relay if anything new was stored; returns the live
/// events of every stored message, for both members.
///
/// Replays are published too: if the first attempt died between commit and
/// publish, the retry is what tells the receiver. Duplicates carry the same
/// id and seq. (Pushes to offline receivers follow from the outbox event:
/// duet_jobs::trigger.)
fn announce(ctx: &AppContext, outcomes: &[Result<Appended, ApiError>]) -> Vec<Event> {
    if outcomes.iter().flatten().any(|a| a.created) {
        ctx.outbox_written.notify_one();
    }
    outcomes.iter().flatten().map(|a| ctx.live.message(&a.message)).collect()
}

/// The append statement, as a [`Batch`] the lane can retry and split.
struct Appends;

impl Batch for Appends {
    const NAME: &'static str = "append";
    type Request = AppendRequest;
    type Output = Appended;

    async fn run(&self, conn: &mut PgConnection, requests: &[AppendRequest]) -> Result<Vec<Result<Appended, ApiError>>, sqlx::Error> {
        append_batch(conn, requests).await
    }

    /// A lone append that lost a race on `(conversation, sender, clientMsgId)`
    /// to another process finds the winner's row on the next try; anything
    /// else is final.
    async fn alone_failed(&self, lane: &mut Lane, request: &AppendRequest, err: sqlx::Error) -> Result<Appended, ApiError> {
        if !is_constraint_violation(&err, "messages_conversation_sender_client_msg_id_key") {
            return Err(err.into());
        }
        match lane.run(self, std::slice::from_ref(request)).await {
            Ok(mut outcomes) => outcomes.pop().expect("one outcome per request"),
            Err(e) => Err(e.into()),
        }
    }
}

/// One row of `duet_append`: a request's membership, and the stored message
/// holding its idempotency key (absent when nothing could be stored).
#[derive(sqlx::FromRow)]
struct AppendRow {
    member: bool,
    /// A block between sender and receiver stopped a new message (`duet_common::privacy::block_refusal`).
    refusal: Option<String>,
    id: Option<MessageId>,
    conversation_id: Option<ConversationId>,
    seq: Option<i64>,
    sender_id: Option<UserId>,
    receiver_id: Option<UserId>,
    #[sqlx(rename = "type")]
    kind: Option<MessageType>,
    text: Option<String>,
    payload: Option<serde_json::Value>,
    client_msg_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
    #[sqlx(json(nullable))]
    reply_to: Option<ReplyPreview>,
    edited_at: Option<DateTime<Utc>>,
    edit_count: Option<i32>,
    deleted_at: Option<DateTime<Utc>>,
    change_seq: Option<i64>,
}

impl AppendRow {
    fn message(self) -> Option<Message> {
        Some(Message {
            id: self.id?,
            conversation_id: self.conversation_id?,
            seq: self.seq?,
            sender_id: self.sender_id?,
            receiver_id: self.receiver_id?,
            kind: self.kind?,
            text: self.text,
            payload: self.payload,
            client_msg_id: self.client_msg_id?,
            created_at: self.created_at?,
            reply_to: self.reply_to,
            edited_at: self.edited_at,
            edit_count: self.edit_count.unwrap_or(0),
            deleted_at: self.deleted_at,
            // A replay answers without reactions: the live copy and reads carry them.
            reactions: None,
            change_seq: self.change_seq,
            hidden_at: None,
        })
    }
}

/// One transaction for the whole batch: `duet_append` (see [`append_unique`]).
///
/// Requests repeating an earlier request's `(sender, clientMsgId)` in the
/// same batch (a client retrying before its first try was answered) are
/// not sent to PostgreSQL: each settles to the first one's outcome, as if
/// it came after it (the same message, `created = false`; or a conflict for
/// other content). Only when the first was refused does a repeat get a call
/// of its own, still in the same transaction (the first may have named other
/// content than the stored message, or another conversation). `Err` means
/// nothing was stored.
async fn append_batch(conn: &mut PgConnection, requests: &[AppendRequest]) -> Result<Vec<Result<Appended, ApiError>>, sqlx::Error> {
    let mut outcomes: Vec<Option<Result<Appended, ApiError>>> = requests.iter().map(|_| None).collect();
    while outcomes.iter().any(Option::is_none) {
        let open: Vec<usize> = (0..requests.len()).filter(|&i| outcomes[i].is_none()).collect();
        let firsts = firsts_of_keys(requests, &open);
        let unique: Vec<&AppendRequest> = firsts.iter().map(|&i| &requests[i]).collect();
        let answers = append_unique(conn, &unique).await?;
        for (&first, answer) in firsts.iter().zip(answers) {
            outcomes[first] = Some(answer);
        }
        for &i in &open {
            if outcomes[i].is_some() {
                continue;
            }
            let request = &requests[i];
            let first = firsts.iter().copied().find(|&f| same_key(&requests[f], request)).expect("every key has a first");
            outcomes[i] = match outcomes[first].as_ref().expect("settled above") {
                Ok(earlier) => Some(replay(request, &earlier.message)),
                // The first was refused (other content than the stored message, a block, another
                // conversation): this one may be answered otherwise, so it gets a call of its own, the next round.
                Err(_) => None,
            };
        }
    }
    Ok(outcomes.into_iter().map(|o| o.expect("every request settled")).collect())
}

/// Two sends share an idempotency key.
fn same_key(a: &AppendRequest, b: &AppendRequest) -> bool {
    a.sender_id == b.sender_id && a.message.client_msg_id == b.message.client_msg_id
}

/// Of `open` (indexes into `requests`), the first request of each
/// idempotency key, in order.
fn firsts_of_keys(requests: &[AppendRequest], open: &[usize]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    open.iter().copied().filter(|&i| seen.insert((requests[i].sender_id, requests[i].message.client_msg_id.as_str()))).collect()
}

/// One round trip: `duet_append` (its definition: `migrations/README.md`)
/// locks the conversations, settles idempotency, assigns seqs and writes the
/// messages, `last_seq` and the outbox events. Each request's key must be
/// its own in `requests`. `Err` means nothing was stored; `Ok` holds each
/// request's own outcome.
async fn append_unique(conn: &mut PgConnection, requests: &[&AppendRequest]) -> Result<Vec<Result<Appended, ApiError>>, sqlx::Error> {
    let now = now_micros();
    let ids: Vec<MessageId> = requests.iter().map(|_| MessageId::new()).collect();
    let rows: Vec<AppendRow> = sqlx::query_as(
        "select member, refusal, id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at, \
           reply_to, edited_at, edit_count, deleted_at, change_seq \
         from duet_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&ids)
    .bind(requests.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.sender_id).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.message.kind.as_str()).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.message.text.as_deref()).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.message.payload.as_ref()).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.message.client_msg_id.as_str()).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.message.reply_to).collect::<Vec<_>>())
    .bind(now)
    .bind(now.to_rfc3339())
    .bind(EVENT_VERSION as i32)
    .fetch_all(conn)
    .await?;
    if rows.len() != requests.len() {
        return Err(sqlx::Error::Protocol(format!("duet_append answered {} rows for {} requests", rows.len(), requests.len())));
    }
    Ok(requests
        .iter()
        .zip(ids)
        .zip(rows)
        .map(|((request, id), row)| {
            if !row.member {
                return Err(ApiError::conversation_not_found());
            }
            let refusal = row.refusal.clone();
            // A retry of a message stored before a block still gets its answer.
            let Some(message) = row.message() else {
                return Err(match refusal.as_deref() {
                    Some("reply_not_found") => ApiError::new(ErrorCode::ReplyNotFound, "`replyTo` is not a message of this conversation"),
                    Some(refusal) => block_refusal(refusal),
                    None => ApiError::Internal(anyhow::anyhow!("duet_append stored nothing for a member")),
                });
            };
            if message.id == id { Ok(Appended { message, created: true }) } else { replay(request, &message) }
        })
        .collect())
}

/// A retry of a stored message: the same content returns it; other content
/// means the client reused an id, which must not be hidden.
fn replay(request: &AppendRequest, earlier: &Message) -> Result<Appended, ApiError> {
    if earlier.conversation_id == request.conversation_id && request.message.same_content(earlier) {
        Ok(Appended { message: earlier.clone(), created: false })
    } else {
        Err(ApiError::new(
            ErrorCode::IdempotencyConflict,
            format!("clientMsgId `{}` was already used for message {} with other content", request.message.client_msg_id, earlier.id),
        ))
    }
}

/// Writes domain events to the outbox inside the caller's transaction.
pub async fn write_outbox(tx: &mut Transaction<'_, Postgres>, events: impl IntoIterator<Item = DomainEvent>) -> Result<(), sqlx::Error> {
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

/// Outbox columns as arrays for `unnest`: event types, conversations, payloads.
type OutboxRows = (Vec<&'static str>, Vec<ConversationId>, Vec<serde_json::Value>);

/// The outbox columns of `events`.
fn outbox_rows(events: impl IntoIterator<Item = DomainEvent>) -> Result<OutboxRows, sqlx::Error> {
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
