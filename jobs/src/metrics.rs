//! Job counters on `/metrics`: enqueued, succeeded, retried and dead, per kind.
//!
//! Created once per process (the command side enqueues, the jobs service
//! runs) so each family is registered once.

use duet_common::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// What a job does: `push` (alert), `badge` (silent badge update), `lastseen`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Default)]
pub struct JobMetrics {
    pub enqueued: Family<KindLabel, Counter>,
    pub succeeded: Family<KindLabel, Counter>,
    pub retried: Family<KindLabel, Counter>,
    pub dead: Family<KindLabel, Counter>,
    /// Pushes not enqueued or not sent because the receiver was online, or
    /// collapsed into an outstanding notification.
    pub skipped: Family<KindLabel, Counter>,
}

impl JobMetrics {
    /// Creates the families and registers them in the process registry.
    pub fn register(metrics: &Metrics) -> Self {
        let m = JobMetrics::default();
        metrics.register("jobs_enqueued", "Jobs enqueued", m.enqueued.clone());
        metrics.register("jobs_succeeded", "Jobs that finished", m.succeeded.clone());
        metrics.register("jobs_retried", "Job attempts that failed and were rescheduled", m.retried.clone());
        metrics.register("jobs_dead", "Jobs given up after their last attempt or a permanent error", m.dead.clone());
        metrics.register("jobs_skipped", "Pushes skipped: receiver online, nothing unread, or collapsed", m.skipped.clone());
        m
    }

    pub fn inc(family: &Family<KindLabel, Counter>, kind: &'static str) {
        Self::inc_by(family, kind, 1);
    }

    pub fn inc_by(family: &Family<KindLabel, Counter>, kind: &'static str, n: u64) {
        family.get_or_create(&KindLabel { kind }).inc_by(n);
    }
}
