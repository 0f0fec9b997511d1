//! `duet-bench chat`: open-loop 1:1 chat load with a consistency check.
//!
//! Message k (k = 0, 1, …) is due at `start + k / R` and is sent by user
//! `k mod 2P` (the `pacer` thread keeps the schedule), so sends follow the
//! schedule, not the replies: a slow server shows up as latency, not as a
//! lower offered rate. Latency is measured from
//! the due time (no coordinated omission). The due time travels inside the
//! clientMsgId, so acks and deliveries are timed without shared maps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use crate::checker::{self, ReaderLog, SenderLog, Verdict};
use crate::client::{self, WsRx, WsTx};
use crate::pacer::{self, Schedule};
use crate::report::{self, Percentiles};
use crate::session::Session;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws
    #[arg(long)]
    pub url: String,
    /// HTTP base, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub http: String,
    #[command(flatten)]
    pub schedule: Schedule,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait, after sending stops, for outstanding acks and deliveries
    /// before the final sync. Acks later than that cannot be checked (the
    /// verdict is then INCOMPLETE): give an overloaded run time to drain.
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
    /// Acked after a reader's final sync began, so not checked (see `--drain-timeout`).
    unchecked: u64,
    errors: BTreeMap<String, u64>,
}

/// Counters shared by every session, for the progress line.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Microseconds from the start to the latest ack, for the achieved rate.
    pub(crate) last_ack_us: AtomicU64,
}

/// What a session's reader collected.
pub(crate) struct ReaderOutcome {
    pub(crate) sender: SenderLog,
    pub(crate) reader: ReaderLog,
    pub(crate) ack: Histogram<u64>,
    pub(crate) delivery: Histogram<u64>,
    pub(crate) errors: HashMap<String, u64>,
}

pub async fn run(args: ChatArgs) -> anyhow::Result<bool> {
    args.schedule.check()?;
    let http = reqwest::Client::new();
    let users_n = args.schedule.pairs * 2;
    eprintln!("setting up {} users in {} conversations…", users_n, args.schedule.pairs);
    let (users, conversations) = client::setup_pairs(&http, &args.http, args.schedule.pairs, "bench").await?;
    let sessions: Vec<(WsTx, WsRx, u64)> =
        futures_util::stream::iter(users.iter()).map(|u| client::connect(&args.url, &u.token, None)).buffered(32).try_collect().await?;

    let totals = Arc::new(Totals::default());
    let start = Instant::now() + Duration::from_millis(200);
    let send_until = start + Duration::from_secs(args.schedule.duration);
    let total_messages = args.schedule.messages();
    let (gate, _) = watch::channel(users_n);
    let gate = Arc::new(gate);
    let schedules = pacer::start(start, args.schedule.rate, total_messages, users_n);
    let mut tasks = Vec::new();
    for (u, ((tx, rx, heartbeat_ms), schedule)) in sessions.into_iter().zip(schedules).enumerate() {
        let conversation = conversations[u / 2].clone();
        let session = Session {
            index: u as u64,
            users: users_n as u64,
            rate: args.schedule.rate,
            total_messages,
            start,
            conversation,
            user_id: users[u].id.clone(),
            heartbeat: Duration::from_millis(heartbeat_ms),
            schedule,
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
        verdict.unchecked += v.unchecked;
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
        unchecked: verdict.unchecked,
        errors,
    };
    print_report(&report, &args, verdict.label());
    Ok(verdict.clean())
}

fn print_report(r: &ChatReport, args: &ChatArgs, verdict: &str) {
    let table = format!(
        "duet-bench chat: {} pairs, target {:.0} msg/s for {} s\n\
         offered {:.0} msg/s, achieved {:.0} msg/s; sent {}, acked {}, delivered live {}\n{}\n{}\n\
         checker: lost {}, unexpected {}, duplicates {}, order errors {}, unchecked {} => {}\nerrors: {:?}",
        args.schedule.pairs,
        args.schedule.rate,
        args.schedule.duration,
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
        r.unchecked,
        verdict,
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
