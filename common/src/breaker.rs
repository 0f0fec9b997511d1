//! A circuit breaker for calls to a dependency that may hang rather than fail
//! (a Redis that is paused, swapping or partitioned keeps its socket open,
//! so every call waits out its deadline).
//!
//! - **Closed**: calls go through; `failures` consecutive failures open it.
//! - **Open**: calls are refused at once, without a round trip, for `cool_down`.
//! - **Half-open**: after the cool-down, exactly one call (the probe) goes
//!   through while the others are still refused; its success closes the
//!   breaker, its failure (or its being dropped unfinished) opens it again.
//!
//! Hand-written rather than `failsafe`: that crate lets every call through
//! while half-open and reads the wall clock, so `tokio::time::pause` cannot
//! drive its tests.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight.
    HalfOpen,
}

/// What the breaker says of the dependency right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Closed,
    Open,
    HalfOpen,
}

/// Leave to make one call; report how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]. A probe dropped without a report counts as failed.
#[must_use]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

/// What a report changed, for the caller's metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    /// The breaker just opened (from closed or from a failed probe).
    Opened,
    /// A probe succeeded: the breaker closed again.
    Closed,
}

impl Breaker {
    pub fn new(failures: u32, cool_down: Duration) -> Self {
        Breaker { failures: failures.max(1), cool_down, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    pub fn health(&self) -> Health {
        match *self.state.lock().expect("breaker poisoned") {
            State::Closed { .. } => Health::Closed,
            State::Open { .. } => Health::Open,
            State::HalfOpen => Health::HalfOpen,
        }
    }

    /// A permit to call, or `None` while the breaker is open (or half-open with its probe in flight).
    pub fn permit(&self) -> Option<Permit<'_>> {
        let mut state = self.state.lock().expect("breaker poisoned");
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => return None,
        };
        Some(Permit { breaker: self, probe, reported: false })
    }

    fn report(&self, probe: bool, ok: bool) -> Transition {
        let mut state = self.state.lock().expect("breaker poisoned");
        let open = State::Open { until: Instant::now() + self.cool_down };
        match (*state, ok) {
            (State::HalfOpen, true) if probe => {
                *state = State::Closed { failures: 0 };
                Transition::Closed
            }
            (State::HalfOpen, false) if probe => {
                *state = open;
                Transition::Opened
            }
            (State::Closed { .. }, true) => {
                *state = State::Closed { failures: 0 };
                Transition::None
            }
            (State::Closed { failures }, false) if failures + 1 >= self.failures => {
                *state = open;
                Transition::Opened
            }
            (State::Closed { failures }, false) => {
                *state = State::Closed { failures: failures + 1 };
                Transition::None
            }
            // A call let through before the breaker opened, answering late: the state stands.
            _ => Transition::None,
        }
    }
}

impl Permit<'_> {
    pub fn succeeded(mut self) -> Transition {
        self.reported = true;
        self.breaker.report(self.probe, true)
    }

    pub fn failed(mut self) -> Transition {
        self.reported = true;
        self.breaker.report(self.probe, false)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe whose caller gave up must not leave the breaker half-open for good.
        if !self.reported && self.probe {
            self.breaker.report(true, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let breaker = Breaker::new(3, COOL_DOWN);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::None);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::None);
        assert_eq!(breaker.permit().unwrap().succeeded(), Transition::None);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::None);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::None);
        assert_eq!(breaker.health(), Health::Closed);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::Opened);
        assert_eq!(breaker.health(), Health::Open);
        assert!(breaker.permit().is_none(), "open: callers fail fast");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_probe_at_a_time_decides() {
        let breaker = Breaker::new(1, COOL_DOWN);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::Opened);
        tokio::time::advance(COOL_DOWN - Duration::from_millis(1)).await;
        assert!(breaker.permit().is_none(), "still cooling down");
        tokio::time::advance(Duration::from_millis(1)).await;

        let probe = breaker.permit().expect("the probe");
        assert_eq!(breaker.health(), Health::HalfOpen);
        assert!(breaker.permit().is_none(), "only one probe at a time");
        assert_eq!(probe.failed(), Transition::Opened);
        assert!(breaker.permit().is_none(), "a failed probe opens it for another cool-down");

        tokio::time::advance(COOL_DOWN).await;
        assert_eq!(breaker.permit().expect("the next probe").succeeded(), Transition::Closed);
        assert_eq!(breaker.health(), Health::Closed);
        assert!(breaker.permit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_unfinished_counts_as_failed() {
        let breaker = Breaker::new(1, COOL_DOWN);
        assert_eq!(breaker.permit().unwrap().failed(), Transition::Opened);
        tokio::time::advance(COOL_DOWN).await;
        drop(breaker.permit().expect("the probe"));
        assert_eq!(breaker.health(), Health::Open);
        tokio::time::advance(COOL_DOWN).await;
        assert!(breaker.permit().is_some(), "probed again after another cool-down");
    }

    #[tokio::test(start_paused = true)]
    async fn late_answers_of_calls_let_through_before_it_opened_change_nothing() {
        let breaker = Breaker::new(1, COOL_DOWN);
        let early = breaker.permit().unwrap();
        assert_eq!(breaker.permit().unwrap().failed(), Transition::Opened);
        assert_eq!(early.succeeded(), Transition::None);
        assert_eq!(breaker.health(), Health::Open);
    }
}
