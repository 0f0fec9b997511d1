//! Delivered and read markers: cumulative, per member, forward only.
//!
//! Receipts are as frequent as messages (every receiver acknowledges what
//! it got), so they go through group commit too: a batch locks its member
//! rows, applies each receipt in arrival order, updates the rows that moved
//! and writes their outbox events in one transaction, in one round trip
//! (the `duet_receipts` function). After the commit the writer tells the
//! other member (and the user's other devices) of every marker that moved,
//! in one event batch (`duet_common::fanout`: this node's sessions at once,
//! the Redis publish queued), then answers the callers.

use duet_common::error::ErrorCode;
use duet_common::ids::{ConversationId, UserId};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use duet_common::db::{Batch, Lane};
use duet_common::events::EVENT_VERSION;
use duet_common::fanout::Publisher;
use duet_common::protocol::{ReceiptOut, ServerEvent};
use duet_common::{ApiError, AppContext};
use poem_openapi::Object;
use serde::Serialize;
use sqlx::PgConnection;

use crate::appender::now_micros;
use crate::batcher::{BatchFamilies, BatchHandler, Batcher, Outcome};

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
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
    /// The other member, who is told about the move.
    #[oai(skip)]
    #[serde(skip)]
    pub peer_id: UserId,
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
    pub user_id: UserId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub receipt: Receipt,
}

/// Handle to the receipt writers. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptWriter {
    batcher: Batcher<ReceiptRequest, Markers>,
}

impl ReceiptWriter {
    /// Starts the writer tasks, each with a connection of its own.
    pub fn start(ctx: &AppContext, metrics: &BatchFamilies) -> Self {
        let writers = (0..ctx.settings.append_writers).map(|_| ReceiptBatchWriter {
            ctx: ctx.clone(),
            lane: Lane::new(ctx.db.clone()),
            publisher: ctx.live.publisher(),
        });
        let spacing = Duration::from_millis(ctx.settings.receipt_spacing_ms);
        ReceiptWriter { batcher: Batcher::start("receipt", metrics, writers, ctx.settings.append_max_batch, spacing) }
    }

    /// Moves the user's marker up to `seq`. A lower seq is a no-op; a seq
    /// beyond the conversation's newest message is refused.
    pub async fn record(&self, request: ReceiptRequest) -> Result<Markers, ApiError> {
        self.queue(request).await?.await
    }

    /// Queues the receipt and returns its outcome to come: receipts a caller
    /// queues one after another are applied in that order.
    pub async fn queue(&self, request: ReceiptRequest) -> Result<Outcome<Markers>, ApiError> {
        if request.seq < 0 {
            return Err(ApiError::new(ErrorCode::InvalidSeq, "`seq` must not be negative"));
        }
        self.batcher.enqueue(request.conversation_id, request).await
    }
}

/// One receipt writer.
struct ReceiptBatchWriter {
    ctx: AppContext,
    lane: Lane,
    publisher: Publisher,
}

impl BatchHandler for ReceiptBatchWriter {
    type Request = ReceiptRequest;
    type Response = Markers;

    async fn handle(&mut self, requests: &[ReceiptRequest]) -> Vec<Result<Markers, ApiError>> {
        let outcomes = self.lane.run_or_split(&Receipts, requests).await;
        announce(&self.ctx, &self.publisher, requests, &outcomes).await;
        outcomes
    }
}

/// Wakes this process's relay and publishes each marker that moved.
async fn announce(ctx: &AppContext, publisher: &Publisher, requests: &[ReceiptRequest], outcomes: &[Result<Markers, ApiError>]) {
    let moved: Vec<(&ReceiptRequest, &Markers)> = requests
        .iter()
        .zip(outcomes)
        .filter_map(|(request, outcome)| outcome.as_ref().ok().filter(|m| m.moved).map(|m| (request, m)))
        .collect();
    if moved.is_empty() {
        return;
    }
    ctx.outbox_written.notify_one();
    let events = moved
        .iter()
        .map(|(request, m)| {
            let event = match request.receipt {
                Receipt::Delivered => ServerEvent::Delivered(receipt(m, m.last_delivered_seq)),
                Receipt::Read => ServerEvent::Read(receipt(m, m.last_read_seq)),
            };
            ctx.live.frame(vec![m.peer_id, m.user_id], &event.encode())
        })
        .collect();
    publisher.publish(events).await;
}

/// The frame data telling of a marker that moved to `seq`.
fn receipt(m: &Markers, seq: i64) -> ReceiptOut {
    ReceiptOut { conversation_id: m.conversation_id, seq, user_id: m.user_id, at: m.at }
}

/// The receipt statement, as a [`Batch`] the lane can retry and split
/// (markers only move forward, so a receipt applied twice is applied once).
struct Receipts;

impl Batch for Receipts {
    const NAME: &'static str = "receipt";
    type Request = ReceiptRequest;
    type Output = Markers;

    async fn run(&self, conn: &mut PgConnection, requests: &[ReceiptRequest]) -> Result<Vec<Result<Markers, ApiError>>, sqlx::Error> {
        record_batch(conn, requests).await
    }
}

/// One row of `duet_receipts`: a request's outcome.
#[derive(sqlx::FromRow)]
struct ReceiptRow {
    member: bool,
    last_seq: Option<i64>,
    delivered: Option<i64>,
    read: Option<i64>,
    peer_id: Option<UserId>,
    moved: bool,
}

/// One transaction for the whole batch, in one round trip: `duet_receipts`
/// (its definition: `migrations/README.md`) locks the member rows, applies each receipt in order,
/// updates the rows that moved and writes their outbox events. `Err` means
/// nothing was stored; `Ok` holds each request's own outcome.
async fn record_batch(conn: &mut PgConnection, requests: &[ReceiptRequest]) -> Result<Vec<Result<Markers, ApiError>>, sqlx::Error> {
    let now = now_micros();
    // As chrono's serde writes it, so the events equal the Rust encoding.
    let at_text = now.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let rows: Vec<ReceiptRow> =
        sqlx::query_as("select member, last_seq, delivered, read, peer_id, moved from duet_receipts($1, $2, $3, $4, $5, $6, $7)")
            .bind(requests.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
            .bind(requests.iter().map(|r| r.user_id).collect::<Vec<_>>())
            .bind(requests.iter().map(|r| r.seq).collect::<Vec<_>>())
            .bind(requests.iter().map(|r| r.receipt == Receipt::Read).collect::<Vec<_>>())
            .bind(now)
            .bind(at_text)
            .bind(EVENT_VERSION as i32)
            .fetch_all(conn)
            .await?;
    if rows.len() != requests.len() {
        return Err(sqlx::Error::Protocol(format!("duet_receipts answered {} rows for {} requests", rows.len(), requests.len())));
    }
    Ok(requests
        .iter()
        .zip(rows)
        .map(|(request, row)| {
            let (true, Some(last_seq), Some(delivered), Some(read), Some(peer_id)) =
                (row.member, row.last_seq, row.delivered, row.read, row.peer_id)
            else {
                return Err(ApiError::conversation_not_found());
            };
            if request.seq > last_seq {
                return Err(ApiError::new(
                    ErrorCode::SeqOutOfRange,
                    format!("`seq` {} is beyond the conversation's last message ({last_seq})", request.seq),
                ));
            }
            Ok(Markers {
                conversation_id: request.conversation_id,
                user_id: request.user_id,
                last_delivered_seq: delivered,
                last_read_seq: read,
                peer_id,
                moved: row.moved,
                at: now,
            })
        })
        .collect())
}
