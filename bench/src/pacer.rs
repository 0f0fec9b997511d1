//! The open-loop schedule, kept by a thread of its own.
//!
//! Message k is due at `start + k / rate` and is sent by sender
//! `k mod senders`. Tokio's timer rounds every deadline up to its next
//! millisecond tick, so sends timed with it left up to a millisecond late;
//! latency is measured from the due time, so that lateness counted against
//! the server, and it is as large as the light-load target itself. The
//! pacer sleeps on the operating system's timer (tens of microseconds late)
//! and hands each message number to its sender's task when it falls due. A
//! pacer that falls behind hands over everything overdue at once: the due
//! times, not the hand-over, are what latency is measured from.

use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// The open-loop schedule's command-line arguments (`chat` and `floor`).
#[derive(Clone, Debug, clap::Args)]
pub struct Schedule {
    /// Pairs of users chatting 1:1; each user has one connection.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Total messages per second, all pairs together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

impl Schedule {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.pairs > 0 && self.rate > 0.0 && self.duration > 0, "pairs, rate and duration must be positive");
        Ok(())
    }

    /// Messages in the whole run.
    pub fn messages(&self) -> u64 {
        (self.rate * self.duration as f64).round() as u64
    }
}

/// The due time of message `k`.
pub fn due(start: Instant, rate: f64, k: u64) -> Instant {
    start + Duration::from_secs_f64(k as f64 / rate)
}

/// Starts the pacer; returns each sender's queue of message numbers, which
/// closes after its last one.
pub fn start(start: Instant, rate: f64, total: u64, senders: usize) -> Vec<mpsc::UnboundedReceiver<u64>> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..senders).map(|_| mpsc::unbounded_channel()).unzip();
    thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            for k in 0..total {
                let wait = due(start, rate, k).saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::sleep(wait);
                }
                // A sender whose session failed is gone; the others go on.
                let _ = txs[(k % senders as u64) as usize].send(k);
            }
        })
        .expect("the pacer thread starts");
    rxs
}
