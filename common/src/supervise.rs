//! Supervised background components: each long-running loop of a process
//! (the outbox relay, the stream consumers, the job workers, the lastSeen
//! mover, the presence sweeper) runs under [`supervise`], which restarts it
//! after any error, panic or unexpected return, with exponential backoff
//! and jitter, until shutdown.
//!
//! A component fails fast: on an error it returns it instead of retrying in
//! place, so every restart is seen, counted (`duet_component_restarts_total`)
//! and reflected in its health. Each component's health lives in one
//! [`Components`] registry per process (on the `AppContext`), which
//! `/readyz` reports: a component is unhealthy from its first failure until
//! a restarted run reports progress ([`Health::ok`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// First pause after a failure; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two restarts: short enough that a component is back
/// within a few seconds of its dependency.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

/// One component's state.
#[derive(Debug)]
struct State {
    /// Since when it has failed without progress; None while healthy.
    down_since: Option<Instant>,
    restarts: u64,
    /// Whether it needs Redis to work at all (then Redis being down, not the
    /// component, is the cause, and readiness does not count it).
    needs_redis: bool,
}

/// A component's health, as `/readyz` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentHealth {
    pub healthy: bool,
    pub restarts: u64,
    /// How long it has been unhealthy (zero when healthy).
    pub down_for: Duration,
    pub needs_redis: bool,
}

/// The health of every supervised component of the process.
pub struct Components {
    states: Mutex<BTreeMap<&'static str, State>>,
    restarts: Family<ComponentLabels, Counter>,
}

impl Components {
    /// Registers `duet_component_restarts_total{component}` in `metrics`.
    pub fn new(metrics: &Metrics) -> Arc<Self> {
        let restarts = Family::<ComponentLabels, Counter>::default();
        metrics.register("component_restarts", "Restarts of supervised background components after a failure", restarts.clone());
        Arc::new(Components { states: Mutex::new(BTreeMap::new()), restarts })
    }

    /// Every registered component's health, by name.
    pub fn report(&self) -> BTreeMap<&'static str, ComponentHealth> {
        let now = Instant::now();
        let states = self.states.lock().expect("components poisoned");
        states
            .iter()
            .map(|(name, s)| {
                let health = ComponentHealth {
                    healthy: s.down_since.is_none(),
                    restarts: s.restarts,
                    down_for: s.down_since.map_or(Duration::ZERO, |since| now - since),
                    needs_redis: s.needs_redis,
                };
                (*name, health)
            })
            .collect()
    }

    /// Registers a component (healthy, no restarts) and returns its handle.
    pub fn register(self: &Arc<Self>, name: &'static str, needs_redis: bool) -> Health {
        let mut states = self.states.lock().expect("components poisoned");
        states.entry(name).or_insert(State { down_since: None, restarts: 0, needs_redis });
        Health { name, components: self.clone() }
    }

    fn update(&self, name: &'static str, change: impl FnOnce(&mut State)) {
        if let Some(state) = self.states.lock().expect("components poisoned").get_mut(name) {
            change(state);
        }
    }
}

/// A component's handle on its own health.
#[derive(Clone)]
pub struct Health {
    name: &'static str,
    components: Arc<Components>,
}

impl Health {
    /// The component made progress: it is healthy (again).
    pub fn ok(&self) {
        self.components.update(self.name, |s| s.down_since = None);
    }

    /// Whether it is healthy now.
    pub fn is_healthy(&self) -> bool {
        self.components.states.lock().expect("components poisoned").get(self.name).is_some_and(|s| s.down_since.is_none())
    }

    /// It failed and is about to be restarted.
    fn failed(&self) {
        self.components.update(self.name, |s| {
            s.down_since.get_or_insert_with(Instant::now);
            s.restarts += 1;
        });
        self.components.restarts.get_or_create(&ComponentLabels { component: self.name.to_owned() }).inc();
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Exponential backoff with jitter: `first` doubling up to `max`; each pause
/// is drawn between half and all of the current step, so components that
/// failed together do not all retry at once.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max, step: first }
    }

    /// The next pause.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=step - half)
    }

    /// After progress: the next failure starts from the first step again.
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

/// Runs `component` (one run per call of `run`) until `stop` is cancelled,
/// restarting it after every error, panic, or return before `stop`.
///
/// Each run gets the component's [`Health`] and must call [`Health::ok`]
/// when it makes progress; a run stops by itself (returning `Ok`) once
/// `stop` is cancelled, finishing what it is doing.
pub async fn supervise<F, Fut>(health: Health, stop: CancellationToken, mut run: F)
where
    F: FnMut(Health) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = health.name;
    let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_MAX);
    loop {
        let outcome = AssertUnwindSafe(run(health.clone())).catch_unwind().await;
        if stop.is_cancelled() {
            return;
        }
        let cause = match outcome {
            Ok(Ok(())) => "it stopped by itself".to_owned(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => format!("panic: {}", panic_message(&panic)),
        };
        // A run that made progress restarts quickly; one that keeps
        // failing backs off.
        if health.is_healthy() {
            backoff.reset();
        }
        health.failed();
        let pause = backoff.next_pause();
        tracing::warn!(component = name, error = %cause, pause_ms = pause.as_millis() as u64, "component failed; restarting");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)")
}

#[cfg(test)]
mod tests;
