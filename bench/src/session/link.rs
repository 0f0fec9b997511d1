//! A session's connection: sending, losing it, replacing it (backoff,
//! failover), resuming on the new one, and the 100 ms tick that watches it
//! and sends receipts.

use std::sync::atomic::Ordering;
use std::time::Instant;

use duet_common::protocol::{ClientEvent, PingData, ReceiptIn, SyncCursor, SyncIn};

use super::{BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT, PROBE_AFTER, Phase, READ_EVERY_TICKS, Run, SyncKind};
use crate::chat::conn::Conn;
use crate::client;

impl Run {
    /// Sends a frame; a connection that cannot take it is lost.
    pub(super) async fn transmit(&mut self, frame: tokio_tungstenite::tungstenite::Message) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        if conn.send(frame, self.s.options.stall_timeout).await {
            return true;
        }
        self.lost();
        false
    }

    /// The connection is gone: count it (not log it: a fault run loses
    /// hundreds), and reconnect after the first backoff step.
    pub(super) fn lost(&mut self) {
        if self.drop_conn().is_none() {
            return;
        }
        *self.errors.entry("connection_lost".into()).or_default() += 1;
        self.timeline.error(self.s.start, Instant::now());
        self.reconnect_at = Some(Instant::now() + BACKOFF_MIN);
    }

    /// Takes the connection away; what was asked on it will not be answered.
    pub(super) fn drop_conn(&mut self) -> Option<Conn> {
        self.syncs.clear();
        self.attempt = 0;
        self.conn.take()
    }

    pub(super) async fn reconnect(&mut self) {
        let nodes = &self.s.options.urls;
        let node = (self.s.home + self.attempt as usize) % nodes.len();
        let no = self.conn_no;
        self.conn_no += 1;
        match Conn::open(&nodes[node], &self.s.token, no, CONNECT_TIMEOUT).await {
            Ok(conn) => {
                let now = Instant::now();
                self.conn = Some(conn);
                self.reconnect_at = None;
                self.attempt = 0;
                self.last_heard = now;
                self.probed_at = None;
                self.reconnects += 1;
                self.s.totals.reconnects.fetch_add(1, Ordering::Relaxed);
                self.timeline.reconnect(self.s.start, now);
                self.resume().await;
            }
            Err(_) => {
                *self.errors.entry("connect_failed".into()).or_default() += 1;
                self.timeline.error(self.s.start, Instant::now());
                self.attempt += 1;
                let backoff = BACKOFF_MIN.saturating_mul(1 << self.attempt.min(5)).min(BACKOFF_MAX);
                self.reconnect_at = Some(Instant::now() + backoff);
            }
        }
    }

    /// On a new connection: sync from the last contiguous seq, send every
    /// unacked message again, receipts again, and the final view if it was under way.
    pub(super) async fn resume(&mut self) {
        self.sync(SyncKind::Resume, self.contiguous).await;
        self.retries.clear();
        let unacked: Vec<u64> = self.outbox.keys().copied().collect();
        for k in unacked {
            if self.conn.is_none() {
                return;
            }
            let again = self.outbox.get(&k).is_some_and(|p| self.first_conn.contains_key(&p.client_msg_id));
            self.send_message(k).await;
            if again && self.conn.is_some() {
                self.resent += 1;
            }
        }
        self.delivered_sent = 0;
        self.read_sent = 0;
        if self.phase == Phase::Final && self.conn.is_some() {
            self.begin_final_view().await;
        }
    }

    pub(super) async fn sync(&mut self, kind: SyncKind, after: i64) {
        let id = self.frame_id(if kind == SyncKind::Final { "s" } else { "r" });
        let cursor = SyncCursor { conversation_id: self.s.conversation, after_seq: after, after_change: None };
        let frame = client::frame(&id, ClientEvent::Sync(SyncIn { conversations: Some(vec![cursor]), limit: Some(500) }));
        if self.transmit(frame).await {
            self.syncs.insert(id, (kind, after));
        }
    }

    /// Every 100 ms: liveness, refused syncs, delivered and read receipts.
    pub(super) async fn tick(&mut self) {
        let now = Instant::now();
        if self.conn.is_none() {
            return;
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= self.s.options.stall_timeout {
            self.lost();
            return;
        }
        if silent >= PROBE_AFTER && self.probed_at.is_none_or(|p| now.saturating_duration_since(p) >= PROBE_AFTER) {
            self.probed_at = Some(now);
            let id = self.frame_id("k");
            self.transmit(client::frame(&id, ClientEvent::Ping(PingData {}))).await;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sync_retries).into_iter().partition(|(at, _, _)| *at <= now);
        self.sync_retries = later;
        for (_, kind, after) in due {
            self.sync(kind, after).await;
        }
        if !self.s.options.receipts {
            return;
        }
        if self.contiguous > self.delivered_sent {
            let seq = self.contiguous;
            let id = self.frame_id("d");
            let frame = client::frame(&id, ClientEvent::Delivered(ReceiptIn { conversation_id: self.s.conversation, seq }));
            if self.transmit(frame).await {
                self.delivered_sent = seq;
            }
        }
        // Read receipts while the conversation is "open" (the sending phase), a second behind.
        self.ticks += 1;
        if self.phase == Phase::Sending && self.ticks.is_multiple_of(READ_EVERY_TICKS) {
            let seq = self.read_target.min(self.delivered_sent);
            if seq > self.read_sent {
                let id = self.frame_id("e");
                let frame = client::frame(&id, ClientEvent::Read(ReceiptIn { conversation_id: self.s.conversation, seq }));
                if self.transmit(frame).await {
                    self.read_sent = seq;
                }
            }
            self.read_target = self.contiguous;
        }
    }
}
