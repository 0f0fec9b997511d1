//! What a session does with each frame it hears.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Phase, RETRY_DEFAULT, Run, SyncKind};
use crate::chat::frames::{Frame, WireMessage};
use crate::checker::Seen;
use crate::client;
use duet_common::protocol::{ClientEvent, ReceiptIn};

/// Codes after which the same send (or sync) is tried again.
const RETRYABLE: &[&str] = &["rate_limited", "unavailable", "internal"];

/// The message number inside a bench clientMsgId (`session-k-dueMicros`).
fn number(client_msg_id: &str) -> Option<u64> {
    client_msg_id.split('-').nth(1)?.parse().ok()
}

/// The due time (µs from the start) inside a bench clientMsgId.
fn due_us(client_msg_id: &str) -> Option<u64> {
    client_msg_id.rsplit('-').next()?.parse().ok()
}

impl Run {
    pub(super) async fn heard(&mut self, at: Instant, frame: Frame) {
        self.last_heard = at;
        self.probed_at = None;
        match frame {
            Frame::Ack { client_msg_id, message_id, seq } => self.acked(at, client_msg_id, message_id, seq),
            Frame::Message(m) => {
                let conn = self.conn.as_ref().map_or(0, |c| c.no);
                if m.sender_id == self.s.user_id && self.first_conn.get(&m.client_msg_id) == Some(&conn) {
                    self.reader.echoes += 1;
                }
                self.reader.live.push((conn, Seen::from(&m), at));
                self.arrived(at, &m);
            }
            Frame::Synced { reference, messages, has_more } => self.synced(at, reference, messages, has_more).await,
            Frame::Error { reference, code, retry_after_ms } => self.refused(at, reference, code, retry_after_ms),
            Frame::Other => {}
            Frame::Bad(why) => {
                eprintln!("\nsession {}: a frame that did not decode: {why}", self.s.index);
                *self.errors.entry("bad_frame".into()).or_default() += 1;
            }
            Frame::Closed => self.lost(),
        }
    }

    fn acked(&mut self, at: Instant, client_msg_id: String, message_id: String, seq: i64) {
        let pending = number(&client_msg_id).filter(|k| self.outbox.get(k).is_some_and(|p| p.client_msg_id == client_msg_id));
        let Some(p) = pending.and_then(|k| self.outbox.remove(&k)) else {
            // A second answer to a resend: the same message, or a duplicate the checker counts.
            match self.sender.acked.get(&client_msg_id) {
                Some((s, id, _)) if (*s, id.as_str()) != (seq, message_id.as_str()) => {
                    self.sender.other_acks.push((client_msg_id, seq, message_id));
                }
                Some(_) => {}
                None => *self.errors.entry("stray_ack".into()).or_default() += 1,
            }
            return;
        };
        let since_start = at.saturating_duration_since(self.s.start).as_micros() as u64;
        let latency = since_start.saturating_sub(p.due_us).max(1);
        self.ack.saturating_record(latency);
        self.timeline.acked(p.due_us, latency);
        self.sender.acked.insert(client_msg_id, (seq, message_id, at));
        self.s.totals.acked.fetch_add(1, Ordering::Relaxed);
        self.s.totals.last_ack_us.fetch_max(since_start, Ordering::Relaxed);
        self.hold(seq);
    }

    /// A message reached the app (live or synced); the first copy of a peer's message is a delivery.
    fn arrived(&mut self, at: Instant, m: &WireMessage) {
        if !self.hold(m.seq) || m.sender_id == self.s.user_id {
            return;
        }
        if let Some(due) = due_us(&m.client_msg_id) {
            let since_start = at.saturating_duration_since(self.s.start).as_micros() as u64;
            self.delivery.saturating_record(since_start.saturating_sub(due).max(1));
        }
        self.s.totals.delivered.fetch_add(1, Ordering::Relaxed);
        self.timeline.delivered(self.s.start, at);
    }

    async fn synced(&mut self, at: Instant, reference: Option<String>, messages: Vec<WireMessage>, has_more: bool) {
        // Answers to a sync sent on an earlier connection never come here (each connection has its own stream).
        let Some((kind, after)) = reference.and_then(|r| self.syncs.remove(&r)) else { return };
        for m in &messages {
            self.arrived(at, m);
        }
        let next = if has_more { messages.last().map(|m| m.seq) } else { None };
        let seen = messages.iter().map(Seen::from).collect::<Vec<_>>();
        match kind {
            SyncKind::Resume => self.reader.resumed.push((after, seen)),
            SyncKind::Final => self.reader.synced.extend(seen),
        }
        match (kind, next) {
            (_, Some(after)) => self.sync(kind, after).await,
            (SyncKind::Final, None) => self.finish().await,
            (SyncKind::Resume, None) => {}
        }
    }

    /// The final view is in: a last delivered receipt, and the session ends.
    async fn finish(&mut self) {
        if self.s.options.receipts && self.contiguous > self.delivered_sent {
            let id = self.frame_id("d");
            let receipt = ReceiptIn { conversation_id: self.s.conversation, seq: self.contiguous };
            self.transmit(client::frame(&id, ClientEvent::Delivered(receipt))).await;
        }
        self.deadline = None;
        self.phase = Phase::Done;
    }

    fn refused(&mut self, at: Instant, reference: Option<String>, code: String, retry_after_ms: Option<u64>) {
        self.timeline.error(self.s.start, at);
        let retryable = RETRYABLE.contains(&code.as_str());
        *self.errors.entry(code).or_default() += 1;
        let Some(reference) = reference else { return };
        let when = at + retry_after_ms.map_or(RETRY_DEFAULT, std::time::Duration::from_millis);
        if let Some((kind, after)) = self.syncs.remove(&reference) {
            if retryable {
                self.sync_retries.push((when, kind, after));
            }
            return;
        }
        let Some(k) = number(&reference).filter(|k| self.outbox.get(k).is_some_and(|p| p.client_msg_id == reference)) else { return };
        self.s.totals.refused.fetch_add(1, Ordering::Relaxed);
        if retryable {
            self.retries.insert((when, k));
        } else {
            // Refused for good: answered, never to be acked.
            self.outbox.remove(&k);
        }
    }
}
