//! The per-second timeline of a chat run. Each session records its own
//! events (no shared lock on the hot path); the run merges them.
//!
//! `offered` and `acked` count by the second the message was due (so a
//! fault shows as the seconds whose messages were late or missing), the
//! rest by the second they happened.

use std::time::Instant;

use serde::Serialize;

use crate::report;

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    pub t: u64,
    /// Messages due in this second.
    pub offered: u64,
    /// Acks (first ones) of messages due in this second.
    pub acked: u64,
    /// Messages that reached their receiver for the first time (live or by a resume sync).
    pub delivered: u64,
    /// Error frames, failed connection attempts and lost connections.
    pub errors: u64,
    /// Connections re-established.
    pub reconnects: u64,
    /// p99 latency of this second's acks, from their due times.
    pub ack_p99_ms: f64,
}

#[derive(Clone, Copy)]
enum Count {
    Offered,
    Acked,
    Delivered,
    Errors,
    Reconnects,
}

/// One session's events.
#[derive(Debug, Default)]
pub(crate) struct Log {
    counts: Vec<[u64; 5]>,
    /// (due second, ack latency in µs).
    acks: Vec<(u32, u64)>,
}

impl Log {
    fn add(&mut self, second: u64, what: Count) {
        let second = second as usize;
        if self.counts.len() <= second {
            self.counts.resize(second + 1, [0; 5]);
        }
        self.counts[second][what as usize] += 1;
    }

    pub(crate) fn offered(&mut self, due_us: u64) {
        self.add(due_us / 1_000_000, Count::Offered);
    }

    pub(crate) fn acked(&mut self, due_us: u64, latency_us: u64) {
        self.add(due_us / 1_000_000, Count::Acked);
        self.acks.push(((due_us / 1_000_000) as u32, latency_us));
    }

    pub(crate) fn delivered(&mut self, start: Instant, at: Instant) {
        self.add(at.saturating_duration_since(start).as_secs(), Count::Delivered);
    }

    pub(crate) fn error(&mut self, start: Instant, at: Instant) {
        self.add(at.saturating_duration_since(start).as_secs(), Count::Errors);
    }

    pub(crate) fn reconnect(&mut self, start: Instant, at: Instant) {
        self.add(at.saturating_duration_since(start).as_secs(), Count::Reconnects);
    }
}

/// Merges the sessions' logs into one entry per second, from 0 to the last second with an event.
pub(crate) fn merge<'a>(logs: impl IntoIterator<Item = &'a Log>) -> Vec<Second> {
    let mut seconds: Vec<Second> = Vec::new();
    let mut latencies = Vec::new();
    for log in logs {
        if seconds.len() < log.counts.len() {
            seconds.resize_with(log.counts.len(), Second::default);
        }
        for (s, c) in seconds.iter_mut().zip(&log.counts) {
            s.offered += c[Count::Offered as usize];
            s.acked += c[Count::Acked as usize];
            s.delivered += c[Count::Delivered as usize];
            s.errors += c[Count::Errors as usize];
            s.reconnects += c[Count::Reconnects as usize];
        }
        for &(second, us) in &log.acks {
            let second = second as usize;
            if latencies.len() <= second {
                latencies.resize_with(second + 1, report::histogram);
            }
            latencies[second].saturating_record(us.max(1));
        }
    }
    for (t, s) in seconds.iter_mut().enumerate() {
        s.t = t as u64;
        s.ack_p99_ms = latencies.get(t).filter(|h| !h.is_empty()).map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0);
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_merge_by_second_with_acks_counted_at_their_due_second() {
        let start = Instant::now();
        let mut a = Log::default();
        a.offered(100);
        a.acked(100, 2_500_000); // due at 0 s, acked 2.5 s later: counts at second 0
        let mut b = Log::default();
        b.offered(1_200_000);
        b.reconnect(start, start + std::time::Duration::from_millis(2100));
        let merged = merge([&a, &b]);
        assert_eq!(merged.len(), 3);
        assert_eq!((merged[0].offered, merged[0].acked), (1, 1));
        assert!((merged[0].ack_p99_ms - 2500.0).abs() < 5.0, "{}", merged[0].ack_p99_ms);
        assert_eq!((merged[1].offered, merged[1].acked, merged[1].ack_p99_ms), (1, 0, 0.0));
        assert_eq!((merged[2].t, merged[2].reconnects), (2, 1));
    }
}
