//! `duet-bench chat`: open-loop 1:1 chat load with a consistency check.
//!
//! Message k (k = 0, 1, …) is due at `start + k / R` and is sent by user
//! `k mod 2P`, so sends follow the schedule, not the replies: a slow server
//! shows up as latency, not as a lower offered rate. Latency is measured from
//! the due time (no coordinated omission). The due time travels inside the
//! clientMsgId, so acks and deliveries are timed without shared maps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::checker::{self, ReaderLog, SenderLog, Verdict};
use crate::client::{self, Incoming, WsRx, WsTx};
use crate::report::{self, Percentiles};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws
    #[arg(long)]
    pub url: String,
    /// HTTP base, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub http: String,
    /// Pairs of users; each user has one session.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Total messages per second, all pairs together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait, after sending stops, for outstanding acks and deliveries.
    #[arg(long, default_value_t = 20)]
    pub drain_timeout: u64,
}

#[derive(Serialize)]
struct ChatReport {
    offered_rate: f64,
    achieved_rate: f64,
    sent: u64,
    acked: u64,
    delivered: u64,
    ack_ms: Percentiles,
    delivery_ms: Percentiles,
    lost: u64,
    unexpected: u64,
    duplicates: u64,
    order_errors: u64,
    errors: BTreeMap<String, u64>,
}

/// Counters shared by every session, for the progress line.
#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
    /// Microseconds from the start to the latest ack, for the achieved rate.
    last_ack_us: AtomicU64,
}

/// What a session's reader collected.
struct ReaderOutcome {
    sender: SenderLog,
    reader: ReaderLog,
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
    errors: HashMap<String, u64>,
}

pub async fn run(args: ChatArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.pairs > 0 && args.rate > 0.0 && args.duration > 0, "pairs, rate and duration must be positive");
    let http = reqwest::Client::new();
    let users_n = args.pairs * 2;
    eprintln!("setting up {} users in {} conversations…", users_n, args.pairs);
    let (users, conversations) = client::setup_pairs(&http, &args.http, args.pairs, "bench").await?;
    let sessions: Vec<(WsTx, WsRx, u64)> = futures_util::stream::iter(users.iter())
        .map(|u| client::connect(&args.url, &u.token, None))
        .buffered(32)
        .try_collect()
        .await?;

    let totals = Arc::new(Totals::default());
    let start = Instant::now() + Duration::from_millis(200);
    let send_until = start + Duration::from_secs(args.duration);
    let total_messages = (args.rate * args.duration as f64).round() as u64;
    let (gate, _) = watch::channel(users_n);
    let gate = Arc::new(gate);
    let mut tasks = Vec::new();
    for (u, (tx, rx, heartbeat_ms)) in sessions.into_iter().enumerate() {
        let conversation = conversations[u / 2].clone();
        let session = Session {
            index: u as u64,
            users: users_n as u64,
            rate: args.rate,
            total_messages,
            start,
            conversation,
            user_id: users[u].id.clone(),
            heartbeat: Duration::from_millis(heartbeat_ms),
            totals: totals.clone(),
            max_seen: Arc::new(AtomicI64::new(0)),
            gate: gate.clone(),
        };
        tasks.push(tokio::spawn(session.run(tx, rx, Duration::from_secs(args.drain_timeout))));
    }
    let progress = tokio::spawn(progress(totals.clone(), start));
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("session task")??);
    }
    progress.abort();
    eprintln!();

    // Merge and check, conversation by conversation.
    let mut ack = report::histogram();
    let mut delivery = report::histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut verdict = Verdict::default();
    for pair in outcomes.chunks(2) {
        let senders: Vec<&SenderLog> = pair.iter().map(|o| &o.sender).collect();
        let readers: Vec<&ReaderLog> = pair.iter().map(|o| &o.reader).collect();
        let v = checker::check(&senders, &readers);
        verdict.lost += v.lost;
        verdict.unexpected += v.unexpected;
        verdict.duplicates += v.duplicates;
        verdict.order_errors += v.order_errors;
    }
    for o in &outcomes {
        ack.add(&o.ack).expect("same histogram bounds");
        delivery.add(&o.delivery).expect("same histogram bounds");
        for (code, n) in &o.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
    }
    let sent = totals.sent.load(Ordering::Relaxed);
    let acked = totals.acked.load(Ordering::Relaxed);
    let sending = send_until.duration_since(start).as_secs_f64();
    // Acked messages over the time it took to ack them (at least the sending window).
    let acking = (totals.last_ack_us.load(Ordering::Relaxed) as f64 / 1e6).max(sending);
    let report = ChatReport {
        offered_rate: sent as f64 / sending,
        achieved_rate: acked as f64 / acking,
        sent,
        acked,
        delivered: totals.delivered.load(Ordering::Relaxed),
        ack_ms: report::percentiles(&ack),
        delivery_ms: report::percentiles(&delivery),
        lost: verdict.lost,
        unexpected: verdict.unexpected,
        duplicates: verdict.duplicates,
        order_errors: verdict.order_errors,
        errors,
    };
    print_report(&report, &args, verdict.clean());
    Ok(verdict.clean())
}

fn print_report(r: &ChatReport, args: &ChatArgs, clean: bool) {
    let table = format!(
        "duet-bench chat: {} pairs, target {:.0} msg/s for {} s\n\
         offered {:.0} msg/s, achieved {:.0} msg/s; sent {}, acked {}, delivered live {}\n{}\n{}\n\
         checker: lost {}, unexpected {}, duplicates {}, order errors {} => {}\nerrors: {:?}",
        args.pairs,
        args.rate,
        args.duration,
        r.offered_rate,
        r.achieved_rate,
        r.sent,
        r.acked,
        r.delivered,
        report::row("ack", &r.ack_ms),
        report::row("delivery", &r.delivery_ms),
        r.lost,
        r.unexpected,
        r.duplicates,
        r.order_errors,
        if clean { "CLEAN" } else { "FAILED" },
        r.errors,
    );
    if args.json {
        eprintln!("{table}");
        println!("{}", serde_json::to_string(r).expect("report serializes"));
    } else {
        println!("{table}");
    }
}

async fn progress(totals: Arc<Totals>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let t = Instant::now().saturating_duration_since(start).as_secs();
        eprint!(
            "\rt={t:>4}s sent {:>9} acked {:>9} delivered {:>9} refused {:>6}   ",
            totals.sent.load(Ordering::Relaxed),
            totals.acked.load(Ordering::Relaxed),
            totals.delivered.load(Ordering::Relaxed),
            totals.refused.load(Ordering::Relaxed),
        );
    }
}

/// One user's session: a writer (schedule, receipts, pings, sync requests)
/// and a reader (acks, deliveries, sync pages) on the same socket.
struct Session {
    index: u64,
    users: u64,
    rate: f64,
    total_messages: u64,
    start: Instant,
    conversation: String,
    user_id: String,
    heartbeat: Duration,
    totals: Arc<Totals>,
    /// Highest seq received live, for cumulative delivered receipts.
    max_seen: Arc<AtomicI64>,
    /// Every session waits here after its sends are answered, so no reader
    /// syncs while another's acked messages are still in flight.
    gate: Arc<watch::Sender<usize>>,
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
    async fn run(self, mut tx: WsTx, rx: WsRx, drain: Duration) -> anyhow::Result<ReaderOutcome> {
        let arrival = Arrival(self.gate.clone());
        let mut everyone_done = self.gate.subscribe();
        let my_sends = (self.total_messages + self.users - 1 - self.index) / self.users;
        let (answered_tx, answered_rx) = oneshot::channel();
        let (page_tx, mut page_rx) = mpsc::channel::<i64>(4);
        let reader = tokio::spawn(read(rx, self.start, self.totals.clone(), self.max_seen.clone(), my_sends, answered_tx, page_tx));

        // Open-loop sends, receipts at most every 100 ms, pings on the server's interval.
        let mut sent = HashSet::new();
        let mut k = self.index;
        let mut receipt_tick = tokio::time::interval(Duration::from_millis(100));
        let mut ping_tick = tokio::time::interval_at((self.start + self.heartbeat).into(), self.heartbeat);
        let mut last_receipt = 0i64;
        let mut frame_no = 0u64;
        while k < self.total_messages {
            let due = self.start + Duration::from_secs_f64(k as f64 / self.rate);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {
                    let due_us = due.duration_since(self.start).as_micros();
                    let client_msg_id = format!("{}-{}-{}", self.index, k, due_us);
                    let frame = client::frame("chat.message.send", &client_msg_id, json!({
                        "conversationId": self.conversation, "clientMsgId": client_msg_id, "text": format!("bench message {k}"),
                    }));
                    client::send(&mut tx, frame).await?;
                    sent.insert(client_msg_id);
                    self.totals.sent.fetch_add(1, Ordering::Relaxed);
                    k += self.users;
                }
                _ = receipt_tick.tick() => {
                    last_receipt = self.send_receipt(&mut tx, last_receipt, &mut frame_no).await?;
                }
                _ = ping_tick.tick() => {
                    frame_no += 1;
                    client::send(&mut tx, client::frame("presence.ping", &format!("p{frame_no}"), json!({}))).await?;
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
                    last_receipt = self.send_receipt(&mut tx, last_receipt, &mut frame_no).await?;
                }
            }
        }
        drop(arrival);
        let _ = everyone_done.wait_for(|remaining| *remaining == 0).await;
        // Drain the conversation from seq 0, page by page.
        client::send(&mut tx, sync_frame(&self.conversation, 0, &mut frame_no)).await?;
        while let Some(after) = page_rx.recv().await {
            client::send(&mut tx, sync_frame(&self.conversation, after, &mut frame_no)).await?;
        }
        let mut outcome = reader.await.context("reader task")??;
        outcome.sender.user_id = self.user_id.clone();
        outcome.sender.sent = sent;
        let _ = futures_util::SinkExt::send(&mut tx, WsMessage::Close(None)).await;
        Ok(outcome)
    }

    async fn send_receipt(&self, tx: &mut WsTx, last: i64, frame_no: &mut u64) -> anyhow::Result<i64> {
        let seen = self.max_seen.load(Ordering::Relaxed);
        if seen > last {
            *frame_no += 1;
            let frame = client::frame(
                "chat.message.delivered",
                &format!("d{frame_no}"),
                json!({"conversationId": self.conversation, "seq": seen}),
            );
            client::send(tx, frame).await?;
        }
        Ok(seen.max(last))
    }
}

fn sync_frame(conversation: &str, after: i64, frame_no: &mut u64) -> WsMessage {
    *frame_no += 1;
    client::frame(
        "chat.sync",
        &format!("s{frame_no}"),
        json!({"conversations": [{"conversationId": conversation, "afterSeq": after}], "limit": 500}),
    )
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
struct NewMessage {
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
            "chat.message.ack" => {
                let ack: Ack = serde_json::from_str(incoming.data.get())?;
                if let Some(us) = since_start(&ack.client_msg_id) {
                    out.ack.saturating_record(us);
                }
                out.sender.acked.insert(ack.client_msg_id, (ack.seq, ack.message_id));
                answered += 1;
                totals.acked.fetch_add(1, Ordering::Relaxed);
                totals.last_ack_us.fetch_max(Instant::now().duration_since(start).as_micros() as u64, Ordering::Relaxed);
            }
            "chat.message.new" => {
                let m = serde_json::from_str::<NewMessage>(incoming.data.get())?.message;
                if let Some(us) = since_start(&m.client_msg_id) {
                    out.delivery.saturating_record(us);
                }
                max_seen.fetch_max(m.seq, Ordering::Relaxed);
                totals.delivered.fetch_add(1, Ordering::Relaxed);
                out.reader.live.push((m.seq, m.id, m.client_msg_id));
            }
            "chat.sync.result" => {
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
            "error" => {
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
