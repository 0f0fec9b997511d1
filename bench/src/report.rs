//! Latency summaries, the chat report and the readable table.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::chat::ChatArgs;
use crate::chat::timeline::Second;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// A histogram of microseconds, 1 µs to 10 min at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

pub fn row(name: &str, p: &Percentiles) -> String {
    format!("{name:<14} p50 {:>8.3}  p90 {:>8.3}  p99 {:>8.3}  p99.9 {:>8.3}  max {:>9.3}  (ms)", p.p50, p.p90, p.p99, p.p999, p.max)
}

/// The JSON `duet-bench chat --json` prints (a public contract: fields are
/// only ever added).
#[derive(Debug, Serialize)]
pub struct ChatReport {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub sent: u64,
    pub acked: u64,
    /// Messages that reached their receiver, each counted once (live, or by a resume sync).
    pub delivered: u64,
    pub ack_ms: Percentiles,
    pub delivery_ms: Percentiles,
    pub lost: u64,
    pub unexpected: u64,
    pub duplicates: u64,
    pub order_errors: u64,
    /// Acked after a reader's final sync began, so not checked (see `--drain-timeout`).
    pub unchecked: u64,
    /// Error frames by code, and `connection_lost`, `connect_failed`, `no_answer`, …
    pub errors: BTreeMap<String, u64>,
    /// Connections re-established after one was lost.
    pub reconnects: u64,
    /// Sends repeated on a new connection (same clientMsgId).
    pub resent: u64,
    /// Sends repeated after a refusal, once its delay was over (same clientMsgId).
    pub retried: u64,
    /// The read side against PostgreSQL (`--verify-db`), or null.
    pub projections: Option<Projections>,
    /// `CLEAN`, `INCOMPLETE` or `FAILED` (the consistency checker's label).
    pub verdict: String,
    pub timeline: Vec<Second>,
}

/// `--verify-db`'s result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Projections {
    /// Members checked (two per conversation).
    pub checked: u64,
    /// Members whose unread count or markers still differed when the settle timeout ran out.
    pub mismatched: u64,
    /// How long the query API took to agree (the settle timeout when it never did).
    pub settle_ms: u64,
}

impl ChatReport {
    /// The run's exit status: the checker clean and, when checked, the projections equal.
    pub fn clean(&self) -> bool {
        self.verdict == "CLEAN" && self.projections.as_ref().is_none_or(|p| p.mismatched == 0)
    }
}

/// Prints the readable table (on stderr under `--json`, whose JSON goes to stdout).
pub fn print(r: &ChatReport, args: &ChatArgs) {
    let projections = match &r.projections {
        Some(p) => format!("projections: {} members checked, {} mismatched, settled in {} ms", p.checked, p.mismatched, p.settle_ms),
        None => "projections: not checked".into(),
    };
    let table = format!(
        "duet-bench chat: {} pairs on {} node(s), target {:.0} msg/s for {} s\n\
         offered {:.0} msg/s, achieved {:.0} msg/s; sent {}, acked {}, delivered {}\n{}\n{}\n\
         reconnects {}, resent {}, retried {}\n{projections}\n\
         checker: lost {}, unexpected {}, duplicates {}, order errors {}, unchecked {} => {}\nerrors: {:?}",
        args.schedule.pairs,
        args.url.len(),
        args.schedule.rate,
        args.schedule.duration,
        r.offered_rate,
        r.achieved_rate,
        r.sent,
        r.acked,
        r.delivered,
        row("ack", &r.ack_ms),
        row("delivery", &r.delivery_ms),
        r.reconnects,
        r.resent,
        r.retried,
        r.lost,
        r.unexpected,
        r.duplicates,
        r.order_errors,
        r.unchecked,
        if r.clean() {
            "CLEAN"
        } else if r.verdict == "CLEAN" {
            "FAILED (projections)"
        } else {
            &r.verdict
        },
        r.errors,
    );
    if args.json {
        eprintln!("{table}");
        println!("{}", serde_json::to_string(r).expect("report serializes"));
    } else {
        println!("{table}");
    }
}
