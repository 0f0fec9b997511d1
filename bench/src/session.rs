//! One `duet-bench chat` user session: a writer that follows the open-loop
//! schedule (sends, cumulative delivered receipts, pings, then the final
//! sync) and a reader that records acks, deliveries and sync pages.

use duet_common::ids::ConversationId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use duet_common::protocol::{ClientEvent, PingData, ReceiptIn, SendData, ServerKind, SyncCursor, SyncIn};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::chat::{ReaderOutcome, Totals};
use crate::checker::{ReaderLog, SenderLog};
use crate::client::{self, Incoming, WsRx, WsTx};
use crate::{pacer, report};

/// One user's session: a writer (schedule, receipts, pings, sync requests)
/// and a reader (acks, deliveries, sync pages) on the same socket.
pub(crate) struct Session {
    pub(crate) index: u64,
    pub(crate) users: u64,
    pub(crate) rate: f64,
    pub(crate) total_messages: u64,
    pub(crate) start: Instant,
    pub(crate) conversation: String,
    pub(crate) user_id: String,
    pub(crate) heartbeat: Duration,
    /// This sender's message numbers, each handed over when due (see `pacer`).
    pub(crate) schedule: mpsc::UnboundedReceiver<u64>,
    pub(crate) totals: Arc<Totals>,
    /// Highest seq received live, for cumulative delivered receipts.
    pub(crate) max_seen: Arc<AtomicI64>,
    /// Every session waits here after its sends are answered, so no reader
    /// syncs while another's acked messages are still in flight.
    pub(crate) gate: Arc<watch::Sender<usize>>,
}

/// Counts a session out of the live phase when dropped, even on error, so
/// the others never wait for a session that failed.
struct Arrival(Arc<watch::Sender<usize>>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.send_modify(|remaining| *remaining -= 1);
    }
}

impl Session {
    pub(crate) async fn run(mut self, mut tx: WsTx, rx: WsRx, drain: Duration) -> anyhow::Result<ReaderOutcome> {
        let conversation: ConversationId = self.conversation.parse().context("conversation id")?;
        let arrival = Arrival(self.gate.clone());
        let mut everyone_done = self.gate.subscribe();
        let my_sends = (self.total_messages + self.users - 1 - self.index) / self.users;
        let (answered_tx, answered_rx) = oneshot::channel();
        let (page_tx, mut page_rx) = mpsc::channel::<i64>(4);
        let reader = tokio::spawn(read(rx, self.start, self.totals.clone(), self.max_seen.clone(), my_sends, answered_tx, page_tx));

        // Open-loop sends, receipts at most every 100 ms, pings on the server's interval.
        let mut sent = HashSet::new();
        let mut receipt_tick = tokio::time::interval(Duration::from_millis(100));
        let mut ping_tick = tokio::time::interval_at((self.start + self.heartbeat).into(), self.heartbeat);
        let mut last_receipt = 0i64;
        let mut frame_no = 0u64;
        loop {
            tokio::select! {
                k = self.schedule.recv() => {
                    let Some(k) = k else { break };
                    let due_us = pacer::due(self.start, self.rate, k).duration_since(self.start).as_micros();
                    let client_msg_id = format!("{}-{}-{}", self.index, k, due_us);
                    let frame = client::frame(&client_msg_id, ClientEvent::Send(SendData {
                        conversation_id: Some(conversation),
                        receiver_id: None,
                        client_msg_id: client_msg_id.clone(),
                        text: Some(format!("bench message {k}")),
                        kind: None,
                        payload: None,
                    }));
                    client::send(&mut tx, frame).await?;
                    sent.insert(client_msg_id);
                    self.totals.sent.fetch_add(1, Ordering::Relaxed);
                }
                _ = receipt_tick.tick() => {
                    last_receipt = self.send_receipt(&mut tx, conversation, last_receipt, &mut frame_no).await?;
                }
                _ = ping_tick.tick() => {
                    frame_no += 1;
                    client::send(&mut tx, client::frame(&format!("p{frame_no}"), ClientEvent::Ping(PingData {}))).await?;
                }
            }
        }
        // Wait for this session's answers (bounded), then for everyone's.
        let answers = tokio::time::timeout(drain, answered_rx);
        tokio::pin!(answers);
        loop {
            tokio::select! {
                _ = &mut answers => break,
                _ = receipt_tick.tick() => {
                    last_receipt = self.send_receipt(&mut tx, conversation, last_receipt, &mut frame_no).await?;
                }
            }
        }
        drop(arrival);
        let _ = everyone_done.wait_for(|remaining| *remaining == 0).await;
        // Drain the conversation from seq 0, page by page.
        let sync_started = Instant::now();
        client::send(&mut tx, sync_frame(conversation, 0, &mut frame_no)).await?;
        while let Some(after) = page_rx.recv().await {
            client::send(&mut tx, sync_frame(conversation, after, &mut frame_no)).await?;
        }
        let mut outcome = reader.await.context("reader task")??;
        outcome.reader.sync_started = Some(sync_started);
        outcome.sender.user_id = self.user_id.clone();
        outcome.sender.sent = sent;
        let _ = futures_util::SinkExt::send(&mut tx, WsMessage::Close(None)).await;
        Ok(outcome)
    }

    async fn send_receipt(&self, tx: &mut WsTx, conversation: ConversationId, last: i64, frame_no: &mut u64) -> anyhow::Result<i64> {
        let seen = self.max_seen.load(Ordering::Relaxed);
        if seen > last {
            *frame_no += 1;
            let frame =
                client::frame(&format!("d{frame_no}"), ClientEvent::Delivered(ReceiptIn { conversation_id: conversation, seq: seen }));
            client::send(tx, frame).await?;
        }
        Ok(seen.max(last))
    }
}

fn sync_frame(conversation: ConversationId, after: i64, frame_no: &mut u64) -> WsMessage {
    *frame_no += 1;
    let cursor = SyncCursor { conversation_id: conversation, after_seq: after };
    client::frame(&format!("s{frame_no}"), ClientEvent::Sync(SyncIn { conversations: Some(vec![cursor]), limit: Some(500) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ack {
    client_msg_id: String,
    message_id: String,
    seq: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    id: String,
    seq: i64,
    sender_id: String,
    client_msg_id: String,
}

#[derive(Deserialize)]
struct IncomingMessage {
    message: WireMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncConversation {
    messages: Vec<WireMessage>,
    has_more: bool,
}

#[derive(Deserialize)]
struct SyncResult {
    conversations: Vec<SyncConversation>,
}

#[derive(Deserialize)]
struct ErrorData {
    code: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// Reads frames until the final sync page. Sends are answered by an ack or an
/// error whose `ref` is the send's frame id (the clientMsgId, which has dashes).
#[allow(clippy::too_many_arguments)]
async fn read(
    mut rx: WsRx,
    start: Instant,
    totals: Arc<Totals>,
    max_seen: Arc<AtomicI64>,
    my_sends: u64,
    answered_tx: oneshot::Sender<()>,
    pages: mpsc::Sender<i64>,
) -> anyhow::Result<ReaderOutcome> {
    let mut out = ReaderOutcome {
        sender: SenderLog::default(),
        reader: ReaderLog::default(),
        ack: report::histogram(),
        delivery: report::histogram(),
        errors: HashMap::new(),
    };
    let mut answered = 0u64;
    let mut answered_tx = Some(answered_tx);
    if my_sends == 0 {
        let _ = answered_tx.take().map(|t| t.send(()));
    }
    let since_start = |client_msg_id: &str| -> Option<u64> {
        let due: u64 = client_msg_id.rsplit('-').next()?.parse().ok()?;
        Some((Instant::now().duration_since(start).as_micros() as u64).saturating_sub(due).max(1))
    };
    while let Some(frame) = rx.next().await {
        let WsMessage::Text(text) = frame.context("ws read")? else { continue };
        let incoming: Incoming = serde_json::from_str(&text).context("server frame")?;
        match incoming.kind {
            ServerKind::Ack => {
                let ack: Ack = serde_json::from_str(incoming.data.get())?;
                if let Some(us) = since_start(&ack.client_msg_id) {
                    out.ack.saturating_record(us);
                }
                out.sender.acked.insert(ack.client_msg_id, (ack.seq, ack.message_id, Instant::now()));
                answered += 1;
                totals.acked.fetch_add(1, Ordering::Relaxed);
                totals.last_ack_us.fetch_max(Instant::now().duration_since(start).as_micros() as u64, Ordering::Relaxed);
            }
            ServerKind::Message => {
                let m = serde_json::from_str::<IncomingMessage>(incoming.data.get())?.message;
                if let Some(us) = since_start(&m.client_msg_id) {
                    out.delivery.saturating_record(us);
                }
                max_seen.fetch_max(m.seq, Ordering::Relaxed);
                totals.delivered.fetch_add(1, Ordering::Relaxed);
                out.reader.live.push((m.seq, m.id, m.client_msg_id));
            }
            ServerKind::SyncResult => {
                let result: SyncResult = serde_json::from_str(incoming.data.get())?;
                let mut next = None;
                for c in result.conversations {
                    if c.has_more {
                        next = c.messages.last().map(|m| m.seq);
                    }
                    out.reader.synced.extend(c.messages.into_iter().map(|m| (m.seq, m.id, m.client_msg_id, m.sender_id)));
                }
                match next {
                    Some(after) => pages.send(after).await.ok().context("writer gone")?,
                    None => break,
                }
            }
            ServerKind::Error => {
                let e: ErrorData = serde_json::from_str(incoming.data.get())?;
                if e.reference.as_deref().is_some_and(|r| r.contains('-')) {
                    answered += 1;
                    totals.refused.fetch_add(1, Ordering::Relaxed);
                }
                *out.errors.entry(e.code).or_default() += 1;
            }
            _ => {}
        }
        if answered >= my_sends {
            let _ = answered_tx.take().map(|t| t.send(()));
        }
    }
    if answered < my_sends {
        *out.errors.entry("no_answer".into()).or_default() += my_sends - answered;
    }
    Ok(out)
}
