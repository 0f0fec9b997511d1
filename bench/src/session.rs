//! One `duet-bench chat` user session: the app. It follows the open-loop
//! schedule (sends, receipts, pings), records acks, deliveries and syncs,
//! and rides out faults as a mobile client must: a lost, closed or silent
//! connection is replaced (backoff from 100 ms doubling to 2 s, its own node
//! first, then the next ones), the conversation resumes with `chat.sync`
//! from the last contiguous seq held, every unacked message is sent again
//! with its clientMsgId, and refused sends are retried after the hinted
//! delay. Nothing a connection does ends the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use duet_common::ids::ConversationId;
use duet_common::protocol::{ClientEvent, PingData, SendData};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::chat::conn::Conn;
use crate::chat::frames::{Frame, WireMessage};
use crate::chat::timeline;
use crate::chat::{Options, ReaderOutcome, Totals};
use crate::checker::{ReaderLog, Seen, SenderLog};
use crate::{client, pacer, report};

mod events;
mod link;

/// Silence after which a connection is probed with a ping.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// The longest a connection attempt (TCP, upgrade, `auth.ok`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: the first delay, doubling up to the cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A vanished session comes back after this long.
const VANISH_FOR: Duration = Duration::from_secs(2);
/// Retry delay for a refused frame without a hint.
const RETRY_DEFAULT: Duration = Duration::from_millis(500);
/// Read receipts lag the delivered marker by about this much while sending.
const READ_EVERY_TICKS: u32 = 10;

/// What the session was set up with.
pub(crate) struct Session {
    pub(crate) index: u64,
    pub(crate) start: Instant,
    pub(crate) conversation: ConversationId,
    pub(crate) user_id: String,
    pub(crate) token: String,
    /// The node this user connects to first and returns to first.
    pub(crate) home: usize,
    /// This sender's message numbers, each handed over when due (see `pacer`).
    pub(crate) schedule: mpsc::UnboundedReceiver<u64>,
    /// When this session drops its connection without a close (`--vanish-at`).
    pub(crate) vanish_at: Vec<Instant>,
    pub(crate) totals: Arc<Totals>,
    pub(crate) options: Arc<Options>,
    /// Every session counts itself out here once its sends are answered, so
    /// no reader takes its final view while another's acked messages are in flight.
    pub(crate) gate: Arc<watch::Sender<usize>>,
}

/// A message not acked yet.
struct Pending {
    client_msg_id: String,
    due_us: u64,
}

/// Where the session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Following the schedule.
    Sending,
    /// The schedule is done; waiting (bounded) for the answers.
    Draining,
    /// Counted out; waiting for every other session.
    Waiting,
    /// Taking the final view from seq 0.
    Final,
    Done,
}

/// What a sync frame was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncKind {
    Resume,
    Final,
}

/// The session at work.
struct Run {
    s: Session,
    conn: Option<Conn>,
    phase: Phase,
    /// Ends the drain, or the final sync when it cannot finish.
    deadline: Option<Instant>,
    counted_out: bool,
    everyone: watch::Receiver<usize>,
    /// Number of the next connection.
    conn_no: u32,
    reconnect_at: Option<Instant>,
    attempt: u32,
    last_heard: Instant,
    probed_at: Option<Instant>,
    frame_no: u64,

    outbox: BTreeMap<u64, Pending>,
    retries: BTreeSet<(Instant, u64)>,
    /// The connection each clientMsgId was first sent on.
    first_conn: HashMap<String, u32>,
    /// Sync frames in flight: frame id → (kind, afterSeq).
    syncs: HashMap<String, (SyncKind, i64)>,
    /// Syncs refused, to ask again.
    sync_retries: Vec<(Instant, SyncKind, i64)>,

    /// The app's view: everything up to `contiguous` is held, and `ahead` past a gap.
    contiguous: i64,
    ahead: BTreeSet<i64>,
    delivered_sent: i64,
    read_sent: i64,
    read_target: i64,
    ticks: u32,

    sender: SenderLog,
    reader: ReaderLog,
    ack: hdrhistogram::Histogram<u64>,
    delivery: hdrhistogram::Histogram<u64>,
    errors: HashMap<String, u64>,
    timeline: timeline::Log,
    resent: u64,
    retried: u64,
    reconnects: u64,
}

/// What woke the loop.
enum Step {
    Due(Option<u64>),
    Heard(Option<(Instant, Frame)>),
    Tick,
    Ping,
    Reconnect,
    Retry,
    Vanish,
    Deadline,
    EveryoneDone,
}

impl Session {
    pub(crate) async fn run(self, conn: Conn) -> ReaderOutcome {
        let everyone = self.gate.subscribe();
        let sender = SenderLog { user_id: self.user_id.clone(), ..SenderLog::default() };
        let mut run = Run {
            conn_no: conn.no + 1,
            conn: Some(conn),
            s: self,
            phase: Phase::Sending,
            deadline: None,
            counted_out: false,
            everyone,
            reconnect_at: None,
            attempt: 0,
            last_heard: Instant::now(),
            probed_at: None,
            frame_no: 0,
            outbox: BTreeMap::new(),
            retries: BTreeSet::new(),
            first_conn: HashMap::new(),
            syncs: HashMap::new(),
            sync_retries: Vec::new(),
            contiguous: 0,
            ahead: BTreeSet::new(),
            delivered_sent: 0,
            read_sent: 0,
            read_target: 0,
            ticks: 0,
            sender,
            reader: ReaderLog::default(),
            ack: report::histogram(),
            delivery: report::histogram(),
            errors: HashMap::new(),
            timeline: timeline::Log::default(),
            resent: 0,
            retried: 0,
            reconnects: 0,
        };
        run.run().await;
        run.outcome()
    }
}

impl Run {
    async fn run(&mut self) {
        let heartbeat = self.conn.as_ref().map_or(Duration::from_secs(20), |c| c.heartbeat);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut ping = tokio::time::interval_at((self.s.start + heartbeat).into(), heartbeat);
        // A loop held up (a connection attempt) does not make up the ticks it missed.
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.s.vanish_at.sort();
        while self.phase != Phase::Done {
            let far = Instant::now() + Duration::from_secs(3600);
            let retry_at = self.retries.first().map_or(far, |(at, _)| *at);
            let vanish_at = self.s.vanish_at.first().copied().unwrap_or(far);
            let step = tokio::select! {
                k = self.s.schedule.recv(), if self.phase == Phase::Sending => Step::Due(k),
                heard = next_frame(&mut self.conn) => Step::Heard(heard),
                _ = tick.tick() => Step::Tick,
                _ = ping.tick() => Step::Ping,
                _ = sleep_until(self.reconnect_at), if self.conn.is_none() && self.reconnect_at.is_some() => Step::Reconnect,
                _ = tokio::time::sleep_until(retry_at.into()), if !self.retries.is_empty() => Step::Retry,
                _ = tokio::time::sleep_until(vanish_at.into()), if !self.s.vanish_at.is_empty() => Step::Vanish,
                _ = sleep_until(self.deadline), if self.deadline.is_some() => Step::Deadline,
                _ = self.everyone.wait_for(|left| *left == 0), if self.phase == Phase::Waiting => Step::EveryoneDone,
            };
            match step {
                Step::Due(Some(k)) => self.offer(k).await,
                Step::Due(None) => {
                    self.phase = Phase::Draining;
                    self.deadline = Some(Instant::now() + self.s.options.drain_timeout);
                }
                Step::Heard(Some((at, frame))) => self.heard(at, frame).await,
                Step::Heard(None) => self.lost(),
                Step::Tick => self.tick().await,
                Step::Ping => {
                    let id = self.frame_id("p");
                    self.transmit(client::frame(&id, ClientEvent::Ping(PingData {}))).await;
                }
                Step::Reconnect => self.reconnect().await,
                Step::Retry => self.retry_due().await,
                Step::Vanish => {
                    self.s.vanish_at.remove(0);
                    if let Some(conn) = self.drop_conn() {
                        conn.vanish();
                        self.reconnect_at = Some(Instant::now() + VANISH_FOR);
                    }
                }
                Step::Deadline => self.deadline_passed().await,
                Step::EveryoneDone => self.start_final().await,
            }
            if self.phase == Phase::Draining && self.outbox.is_empty() {
                self.count_out();
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    fn frame_id(&mut self, prefix: &str) -> String {
        self.frame_no += 1;
        format!("{prefix}{}", self.frame_no)
    }

    /// Leaves the live phase: every other session may take its final view once all have.
    fn count_out(&mut self) {
        if !self.counted_out {
            self.counted_out = true;
            self.phase = Phase::Waiting;
            self.deadline = None;
            self.s.gate.send_modify(|left| *left -= 1);
        }
    }

    async fn deadline_passed(&mut self) {
        self.deadline = None;
        match self.phase {
            Phase::Draining => self.count_out(),
            // No final view in time (no node would serve it): the checker counts what it cannot see as lost.
            Phase::Final => {
                *self.errors.entry("no_final_sync".into()).or_default() += 1;
                self.reader.synced.clear();
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    async fn start_final(&mut self) {
        self.phase = Phase::Final;
        self.deadline = Some(Instant::now() + self.s.options.drain_timeout);
        if self.conn.is_some() {
            self.begin_final_view().await;
        }
    }

    /// Asks for the final view from seq 0 (again, after a reconnect).
    async fn begin_final_view(&mut self) {
        self.reader.synced.clear();
        self.reader.sync_started = Some(Instant::now());
        self.sync(SyncKind::Final, 0).await;
    }

    /// Message `k` falls due: into the outbox, and onto the wire when connected.
    async fn offer(&mut self, k: u64) {
        let due_us = pacer::due(self.s.start, self.s.options.rate, k).duration_since(self.s.start).as_micros() as u64;
        let client_msg_id = format!("{}-{}-{}", self.s.index, k, due_us);
        self.timeline.offered(due_us);
        self.outbox.insert(k, Pending { client_msg_id, due_us });
        if self.conn.is_some() {
            self.send_message(k).await;
        }
    }

    /// Puts message `k` on the current connection.
    async fn send_message(&mut self, k: u64) {
        let Some(p) = self.outbox.get(&k) else { return };
        let client_msg_id = p.client_msg_id.clone();
        let frame = client::frame(
            &client_msg_id,
            ClientEvent::Send(SendData {
                conversation_id: Some(self.s.conversation),
                receiver_id: None,
                client_msg_id: client_msg_id.clone(),
                text: Some(message_text(k, self.s.options.text_bytes)),
                kind: None,
                payload: None,
                reply_to: None,
            }),
        );
        // Recorded before the attempt: a frame written just before its connection failed may still be stored.
        if !self.first_conn.contains_key(&client_msg_id) {
            self.first_conn.insert(client_msg_id.clone(), self.conn.as_ref().map_or(0, |c| c.no));
            self.sender.sent.insert(client_msg_id);
            self.s.totals.sent.fetch_add(1, Ordering::Relaxed);
        }
        self.transmit(frame).await;
    }

    /// Refused sends whose delay is over go again.
    async fn retry_due(&mut self) {
        let now = Instant::now();
        while let Some(&(at, k)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retries.pop_first();
            if self.conn.is_some() && self.outbox.contains_key(&k) {
                self.retried += 1;
                self.send_message(k).await;
            }
        }
    }

    /// Holds `seq` in the app's view; false when it was held already.
    fn hold(&mut self, seq: i64) -> bool {
        if seq <= self.contiguous || !self.ahead.insert(seq) {
            return false;
        }
        while self.ahead.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        true
    }

    fn outcome(&mut self) -> ReaderOutcome {
        let mut errors = std::mem::take(&mut self.errors);
        let unanswered = self.outbox.len() as u64;
        if unanswered > 0 {
            *errors.entry("no_answer".into()).or_default() += unanswered;
        }
        ReaderOutcome {
            sender: std::mem::take(&mut self.sender),
            reader: std::mem::take(&mut self.reader),
            ack: std::mem::replace(&mut self.ack, report::histogram()),
            delivery: std::mem::replace(&mut self.delivery, report::histogram()),
            errors,
            timeline: std::mem::take(&mut self.timeline),
            resent: self.resent,
            retried: self.retried,
            reconnects: self.reconnects,
        }
    }
}

impl Drop for Run {
    /// A session that ends early (a panic) still counts itself out, so the others never wait for it.
    fn drop(&mut self) {
        if !self.counted_out {
            self.s.gate.send_modify(|left| *left -= 1);
        }
    }
}

/// The next frame of the current connection; never, without one.
async fn next_frame(conn: &mut Option<Conn>) -> Option<(Instant, Frame)> {
    match conn {
        Some(conn) => conn.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl From<&WireMessage> for Seen {
    fn from(m: &WireMessage) -> Seen {
        Seen { seq: m.seq, id: m.id.clone(), client_msg_id: m.client_msg_id.clone(), sender_id: m.sender_id.clone() }
    }
}

/// Message `k`'s text: "bench message k", padded with '.' to `bytes` when
/// that is longer (the server's limit is 4,000 characters).
fn message_text(k: u64, bytes: usize) -> String {
    let mut text = format!("bench message {k}");
    if text.len() < bytes {
        text.push(' ');
        text.extend(std::iter::repeat_n('.', bytes - text.len()));
    }
    text
}
