//! Push jobs: an alert to a user who was offline when a message arrived,
//! and a silent badge update when they read a conversation elsewhere.
//!
//! An alert job runs only if it still makes sense: the user is still
//! offline and the conversation still has unread messages. Each device is
//! claimed in `push_deliveries` before the request and marked sent after, so
//! a job re-run after a crash never notifies a device twice (at most once in
//! the crash window; see docs/push.md). Failures the provider calls
//! temporary reschedule the job with backoff; after the last attempt, or on
//! a permanent error, the job is recorded dead with its error.

pub mod apns;
pub mod body;
pub mod fcm;
pub mod provider;
pub mod retry;
pub mod store;
mod token_cache;

use duet_common::ids::{ConversationId, UserId};
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use duet_common::presence;
use duet_common::{AppContext, Settings};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metrics::JobMetrics;
use crate::queue;
use provider::{Notification, SendError};
use store::Device;

/// A push job, as stored in the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum PushJob {
    /// Tell an offline user about new messages in a conversation.
    Alert { user_id: UserId, conversation_id: ConversationId, episode: Uuid, attempt: u32 },
    /// Bring the badge of the user's devices down after a read.
    Badge { user_id: UserId, conversation_id: ConversationId, attempt: u32 },
}

impl PushJob {
    pub fn kind(&self) -> &'static str {
        match self {
            PushJob::Alert { .. } => "push",
            PushJob::Badge { .. } => "badge",
        }
    }

    fn attempt(&self) -> u32 {
        match self {
            PushJob::Alert { attempt, .. } | PushJob::Badge { attempt, .. } => *attempt,
        }
    }

    fn next_attempt(&self) -> PushJob {
        let mut next = self.clone();
        match &mut next {
            PushJob::Alert { attempt, .. } | PushJob::Badge { attempt, .. } => *attempt += 1,
        }
        next
    }
}

/// How a run ended, short of a failure.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// Nothing to do: the user is online, or has read everything.
    Skipped,
}

/// A failed run: retried with backoff if `retry` and attempts remain.
#[derive(Debug)]
struct Failure {
    retry: bool,
    retry_after: Option<Duration>,
    error: String,
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure { retry: true, retry_after: None, error: format!("database: {e}") }
    }
}

/// Runs push jobs: providers, settings and the shared pools.
pub struct Pusher {
    ctx: AppContext,
    fcm: Option<fcm::Fcm>,
    apns: Option<apns::Apns>,
    metrics: JobMetrics,
}

impl Pusher {
    pub fn new(ctx: &AppContext, metrics: JobMetrics) -> anyhow::Result<Self> {
        Ok(Pusher {
            fcm: fcm::Fcm::from_settings(&ctx.settings)?,
            apns: apns::Apns::from_settings(&ctx.settings)?,
            ctx: ctx.clone(),
            metrics,
        })
    }

    fn settings(&self) -> &Settings {
        &self.ctx.settings
    }

    async fn run(&self, job: &PushJob) -> Result<Outcome, Failure> {
        match *job {
            PushJob::Alert { user_id, conversation_id, episode, .. } => self.alert(user_id, conversation_id, episode).await,
            PushJob::Badge { user_id, conversation_id, .. } => self.badge(user_id, conversation_id).await,
        }
    }

    async fn alert(&self, user_id: UserId, conversation_id: ConversationId, episode: Uuid) -> Result<Outcome, Failure> {
        let db = &self.ctx.db;
        // Redis unable to tell counts as offline: a push too many beats a missed one.
        let online = presence::online(&self.ctx.fast_redis, &self.ctx.keys, &[user_id]).await.is_some_and(|o| o[0]);
        let newest = if online { None } else { store::newest_unread(db, user_id, conversation_id).await? };
        let Some(newest) = newest else {
            store::end_episode(db, user_id, conversation_id, episode).await?;
            return Ok(Outcome::Skipped);
        };
        let devices = store::devices(db, user_id).await?;
        let settings = self.settings();
        let notification = Notification {
            silent: false,
            title: settings.push_title.clone(),
            body: body::alert(settings, newest.kind, newest.text.as_deref()),
            conversation_id,
            seq: newest.seq,
            badge: store::badge(db, user_id).await?,
            collapse_id: conversation_id.to_string(),
        };
        let mut failures = Vec::new();
        for device in &devices {
            if !self.has_provider(device) || !store::claim(db, episode, device.id).await? {
                continue;
            }
            match self.send(device, &notification).await {
                Ok(()) => store::mark_sent(db, episode, device.id).await?,
                // The claim stays: the request may have been delivered.
                Err(SendError::InDoubt(e)) => tracing::warn!(device = %device.id, error = %e, "push outcome unknown; not resending"),
                Err(e) => {
                    store::release(db, episode, device.id).await?;
                    failures.extend(self.handle_error(device, e).await?);
                }
            }
        }
        failures_to_result(failures)
    }

    async fn badge(&self, user_id: UserId, conversation_id: ConversationId) -> Result<Outcome, Failure> {
        let db = &self.ctx.db;
        let devices = store::devices(db, user_id).await?;
        let notification = Notification {
            silent: true,
            title: String::new(),
            body: String::new(),
            conversation_id,
            seq: 0,
            badge: store::badge(db, user_id).await?,
            collapse_id: format!("badge-{user_id}"),
        };
        // A badge update carries state, not news: sending it twice is harmless,
        // so it needs no delivery claims.
        let mut failures = Vec::new();
        for device in devices.iter().filter(|d| self.has_provider(d)) {
            match self.send(device, &notification).await {
                Ok(()) => {}
                // Unlike an alert, an unknown outcome is simply tried again.
                Err(SendError::InDoubt(error)) => failures.push(Failure { retry: true, retry_after: None, error }),
                Err(e) => failures.extend(self.handle_error(device, e).await?),
            }
        }
        failures_to_result(failures)
    }

    fn has_provider(&self, device: &Device) -> bool {
        match device.platform.as_str() {
            "ios" => self.apns.is_some(),
            "android" => self.fcm.is_some(),
            _ => false,
        }
    }

    async fn send(&self, device: &Device, n: &Notification) -> Result<(), SendError> {
        match (device.platform.as_str(), &self.apns, &self.fcm) {
            ("ios", Some(apns), _) => apns.send(&device.token, n).await,
            ("android", _, Some(fcm)) => fcm.send(&device.token, n).await,
            _ => Err(SendError::Permanent(format!("no provider for platform {}", device.platform))),
        }
    }

    /// Deletes rejected tokens; returns the failure to report, if any.
    async fn handle_error(&self, device: &Device, error: SendError) -> Result<Option<Failure>, Failure> {
        let error_text = error.to_string();
        tracing::info!(device = %device.id, platform = %device.platform, error = %error_text, "push not delivered");
        Ok(match error {
            SendError::BadToken(_) => {
                store::delete_device(&self.ctx.db, device).await?;
                None
            }
            SendError::Retry { retry_after, .. } => Some(Failure { retry: true, retry_after, error: error_text }),
            SendError::Permanent(_) | SendError::InDoubt(_) => Some(Failure { retry: false, retry_after: None, error: error_text }),
        })
    }

    /// After a dead alert, the next message may notify again.
    async fn give_up(&self, job: &PushJob) {
        if let PushJob::Alert { user_id, conversation_id, episode, .. } = *job
            && let Err(e) = store::end_episode(&self.ctx.db, user_id, conversation_id, episode).await
        {
            tracing::warn!(error = %e, "could not end a dead push's episode");
        }
    }

    /// Puts the next attempt on the queue after the backoff.
    async fn reschedule(&self, job: &PushJob, retry_after: Option<Duration>) -> anyhow::Result<Duration> {
        let next = job.next_attempt();
        let base = Duration::from_secs(self.settings().push_retry_base_secs);
        let wait = retry::delay(base, next.attempt(), retry_after);
        let mut conn = self.ctx.db.acquire().await?;
        queue::push(&mut conn, queue::PUSH_QUEUE, &next, wait, 1).await?;
        Ok(wait)
    }
}

/// Retryable if any device can be retried (the others are skipped by their claims).
fn failures_to_result(failures: Vec<Failure>) -> Result<Outcome, Failure> {
    if failures.is_empty() {
        return Ok(Outcome::Sent);
    }
    let retry = failures.iter().any(|f| f.retry);
    let retry_after = failures.iter().filter_map(|f| f.retry_after).max();
    let error = failures.iter().map(|f| f.error.as_str()).collect::<Vec<_>>().join("; ");
    Err(Failure { retry, retry_after, error })
}

/// The apalis handler of the push queue.
pub async fn handle(job: PushJob, pusher: Data<Arc<Pusher>>) -> Result<(), BoxDynError> {
    let kind = job.kind();
    let metrics = &pusher.metrics;
    match pusher.run(&job).await {
        Ok(outcome) => {
            if outcome == Outcome::Skipped {
                JobMetrics::inc(&metrics.skipped, kind);
            }
            JobMetrics::inc(&metrics.succeeded, kind);
            Ok(())
        }
        Err(failure) if failure.retry && job.attempt() < pusher.settings().push_max_attempts => {
            match pusher.reschedule(&job, failure.retry_after).await {
                Ok(wait) => {
                    tracing::info!(?job, error = %failure.error, ?wait, "push failed; retrying later");
                    JobMetrics::inc(&metrics.retried, kind);
                    Ok(())
                }
                Err(e) => {
                    JobMetrics::inc(&metrics.dead, kind);
                    pusher.give_up(&job).await;
                    Err(format!("{}; and the retry could not be scheduled: {e:#}", failure.error).into())
                }
            }
        }
        Err(failure) => {
            tracing::warn!(?job, error = %failure.error, "push job dead");
            JobMetrics::inc(&metrics.dead, kind);
            pusher.give_up(&job).await;
            Err(failure.error.into())
        }
    }
}
