//! Warnings that would repeat once per request while a dependency is out
//! (Redis down: every send would log "rate limiter unavailable") are logged
//! at most once per window per kind, carrying how many were suppressed
//! since the last one.
//!
//! One `static` per kind of warning, at its site:
//!
//! ```
//! use duet_common::log_throttle::LogThrottle;
//! static RATE_LIMITER_DOWN: LogThrottle = LogThrottle::every_10s();
//! if let Some(suppressed) = RATE_LIMITER_DOWN.check() {
//!     tracing::warn!(suppressed, "rate limiter unavailable");
//! }
//! ```

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct LogThrottle {
    every: Duration,
    window: Mutex<Window>,
}

struct Window {
    /// When the last warning of this kind was logged.
    logged: Option<Instant>,
    /// Occurrences since then that were not logged.
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> Self {
        LogThrottle { every, window: Mutex::new(Window { logged: None, suppressed: 0 }) }
    }

    /// The window every Redis-failure warning uses.
    pub const fn every_10s() -> Self {
        Self::new(Duration::from_secs(10))
    }

    /// An occurrence: `Some(suppressed)` if it should be logged now (with
    /// how many occurrences since the last logged one were not), else `None`.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut window = self.window.lock().expect("log throttle poisoned");
        match window.logged {
            Some(logged) if now.duration_since(logged) < self.every => {
                window.suppressed += 1;
                None
            }
            _ => {
                window.logged = Some(now);
                Some(std::mem::take(&mut window.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_window_carrying_the_count_it_stood_for() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.check(), Some(0), "the first is logged");
        let logged: Vec<_> = (0..2_220).filter_map(|_| throttle.check()).collect();
        assert!(logged.is_empty(), "a flood within the window is counted, not logged");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(throttle.check(), Some(2_220), "the next window's first tells how many were suppressed");
        assert_eq!(throttle.check(), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(throttle.check(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_are_throttled_apart() {
        static A: LogThrottle = LogThrottle::every_10s();
        static B: LogThrottle = LogThrottle::every_10s();
        assert_eq!(A.check(), Some(0));
        assert_eq!(B.check(), Some(0));
        assert_eq!(A.check(), None);
    }
}
