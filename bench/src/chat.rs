//! `duet-bench chat`: open-loop 1:1 chat load with a consistency check.
//!
//! Message k (k = 0, 1, …) is due at `start + k / R` and is sent by user
//! `k mod 2P` (the `pacer` thread keeps the schedule), so sends follow the
//! schedule, not the replies: a slow server shows up as latency, not as a
//! lower offered rate. Latency is measured from the due time (no
//! coordinated omission). The due time travels inside the clientMsgId, so
//! acks and deliveries are timed without shared maps.
//!
//! With several nodes (`--url`/`--http`, index-aligned) each pair's two
//! users live on different nodes, so delivery crosses nodes. Sessions ride
//! out faults (see `session`); `--vanish-at` makes some vanish on purpose,
//! and `--verify-db` checks the read side against PostgreSQL at the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::checker::{self, ReaderLog, SenderLog, Verdict};
use crate::client;
use crate::pacer::{self, Schedule};
use crate::report::{self, ChatReport};
use crate::session::Session;

pub(crate) mod conn;
pub(crate) mod frames;
pub mod timeline;
mod verify;

use conn::Conn;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// WebSocket endpoint of a node, e.g. ws://127.0.0.1:8080/ws; repeat for
    /// several nodes (index-aligned with --http).
    #[arg(long = "url", required = true)]
    pub url: Vec<String>,
    /// HTTP base of the same node, e.g. http://127.0.0.1:8080; one per --url.
    #[arg(long = "http", required = true)]
    pub http: Vec<String>,
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
    /// Receivers send delivered receipts (every 100 ms) and read receipts (a
    /// second behind, while sending), as an app does: `--receipts false` for none.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub receipts: bool,
    /// At this second of the run a tenth of the sessions drop their TCP
    /// connection without a close frame, and reconnect 2 s later. Repeatable.
    #[arg(long = "vanish-at")]
    pub vanish_at: Vec<f64>,
    /// After the run, check every member's unread count and markers from the
    /// query API against this PostgreSQL database.
    #[arg(long)]
    pub verify_db: Option<String>,
    /// Seconds --verify-db waits for the query API to agree with PostgreSQL.
    #[arg(long, default_value_t = 10)]
    pub settle_timeout: u64,
    /// PEM file of a CA to trust besides the public roots, for `wss://` and
    /// `https://` nodes with a certificate from a local CA (scripts/ca.sh).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Seconds of silence (a ping probe unanswered) after which a connection
    /// is given up and replaced.
    #[arg(long, default_value_t = 10)]
    pub stall_timeout: u64,
    /// Pad each message's text to this many bytes (ASCII), to measure what
    /// larger messages cost (docs/capacity.md); 0 keeps the short default text.
    #[arg(long, default_value_t = 0)]
    pub text_bytes: usize,
}

/// The run's settings every session shares.
pub(crate) struct Options {
    pub(crate) urls: Vec<String>,
    pub(crate) rate: f64,
    pub(crate) receipts: bool,
    pub(crate) drain_timeout: Duration,
    pub(crate) stall_timeout: Duration,
    pub(crate) text_bytes: usize,
}

/// Counters shared by every session, for the progress line.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    /// Microseconds from the start to the latest ack, for the achieved rate.
    pub(crate) last_ack_us: AtomicU64,
}

/// What a session collected.
pub(crate) struct ReaderOutcome {
    pub(crate) sender: SenderLog,
    pub(crate) reader: ReaderLog,
    pub(crate) ack: Histogram<u64>,
    pub(crate) delivery: Histogram<u64>,
    pub(crate) errors: HashMap<String, u64>,
    pub(crate) timeline: timeline::Log,
    pub(crate) resent: u64,
    pub(crate) retried: u64,
    pub(crate) reconnects: u64,
}

/// Runs the benchmark and prints the report; true when the verdict is clean.
pub async fn run(args: ChatArgs) -> anyhow::Result<bool> {
    let report = run_report(&args).await?;
    report::print(&report, &args);
    Ok(report.clean())
}

/// Runs the benchmark; returns the report.
pub async fn run_report(args: &ChatArgs) -> anyhow::Result<ChatReport> {
    args.schedule.check()?;
    anyhow::ensure!(args.url.len() == args.http.len(), "give one --http per --url (index-aligned)");
    let nodes = args.url.len();
    if let Some(ca) = &args.ca_file {
        client::trust_ca(ca)?;
    }
    let http = client::http_client()?;
    let users_n = args.schedule.pairs * 2;
    eprintln!("setting up {} users in {} conversations on {nodes} node(s)…", users_n, args.schedule.pairs);
    let (users, conversations) = client::setup_pairs_on(&http, &args.http, args.schedule.pairs, "bench").await?;
    let conns: Vec<Conn> = futures_util::stream::iter(users.iter().enumerate())
        .map(|(u, user)| Conn::open(&args.url[client::home_node(u, nodes)], &user.token, 1, Duration::from_secs(30)))
        .buffered(32)
        .try_collect()
        .await?;

    let options = Arc::new(Options {
        urls: args.url.clone(),
        rate: args.schedule.rate,
        receipts: args.receipts,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
        text_bytes: args.text_bytes,
    });
    let totals = Arc::new(Totals::default());
    let start = Instant::now() + Duration::from_millis(200);
    let send_until = start + Duration::from_secs(args.schedule.duration);
    let (gate, _) = watch::channel(users_n);
    let gate = Arc::new(gate);
    let schedules = pacer::start(start, args.schedule.rate, args.schedule.messages(), users_n);
    let mut tasks = Vec::new();
    for (u, (conn, schedule)) in conns.into_iter().zip(schedules).enumerate() {
        let session = Session {
            index: u as u64,
            start,
            conversation: conversations[u / 2].parse().context("conversation id")?,
            user_id: users[u].id.clone(),
            token: users[u].token.clone(),
            home: client::home_node(u, nodes),
            schedule,
            vanish_at: vanishes(u, &args.vanish_at, start),
            totals: totals.clone(),
            options: options.clone(),
            gate: gate.clone(),
        };
        tasks.push(tokio::spawn(session.run(conn)));
    }
    let progress = tokio::spawn(progress(totals.clone(), start));
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("session task")?);
    }
    progress.abort();
    eprintln!();

    let mut verdict = Verdict::default();
    for pair in outcomes.chunks(2) {
        let senders: Vec<&SenderLog> = pair.iter().map(|o| &o.sender).collect();
        let readers: Vec<&ReaderLog> = pair.iter().map(|o| &o.reader).collect();
        verdict.add(&checker::check(&senders, &readers));
    }
    let projections = match &args.verify_db {
        Some(db) => {
            let members = users.iter().enumerate().map(|(u, user)| verify::Member {
                user_id: user.id.clone(),
                token: user.token.clone(),
                conversation: conversations[u / 2].clone(),
                home: client::home_node(u, nodes),
            });
            Some(verify::run(db, &http, &args.http, members.collect(), Duration::from_secs(args.settle_timeout)).await?)
        }
        None => None,
    };
    Ok(summarize(&outcomes, &totals, &verdict, projections, send_until.duration_since(start)))
}

/// The instants session `u` vanishes: for the v-th `--vanish-at`, sessions
/// with (u + v) mod 10 = 0 (a tenth, a different tenth each time).
fn vanishes(u: usize, at: &[f64], start: Instant) -> Vec<Instant> {
    at.iter()
        .enumerate()
        .filter(|(v, _)| (u + v).is_multiple_of(10))
        .map(|(_, secs)| start + Duration::from_secs_f64(secs.max(0.0)))
        .collect()
}

fn summarize(
    outcomes: &[ReaderOutcome],
    totals: &Totals,
    verdict: &Verdict,
    projections: Option<report::Projections>,
    sending: Duration,
) -> ChatReport {
    let mut ack = report::histogram();
    let mut delivery = report::histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for o in outcomes {
        ack.add(&o.ack).expect("same histogram bounds");
        delivery.add(&o.delivery).expect("same histogram bounds");
        for (code, n) in &o.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
    }
    let sent = totals.sent.load(Ordering::Relaxed);
    let acked = totals.acked.load(Ordering::Relaxed);
    let sending = sending.as_secs_f64();
    // Acked messages over the time it took to ack them (at least the sending window).
    let acking = (totals.last_ack_us.load(Ordering::Relaxed) as f64 / 1e6).max(sending);
    ChatReport {
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
        reconnects: outcomes.iter().map(|o| o.reconnects).sum(),
        resent: outcomes.iter().map(|o| o.resent).sum(),
        retried: outcomes.iter().map(|o| o.retried).sum(),
        projections,
        verdict: verdict.label().to_owned(),
        timeline: timeline::merge(outcomes.iter().map(|o| &o.timeline)),
    }
}

async fn progress(totals: Arc<Totals>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let t = Instant::now().saturating_duration_since(start).as_secs();
        eprint!(
            "\rt={t:>4}s sent {:>9} acked {:>9} delivered {:>9} refused {:>6} reconnects {:>5}   ",
            totals.sent.load(Ordering::Relaxed),
            totals.acked.load(Ordering::Relaxed),
            totals.delivered.load(Ordering::Relaxed),
            totals.refused.load(Ordering::Relaxed),
            totals.reconnects.load(Ordering::Relaxed),
        );
    }
}
