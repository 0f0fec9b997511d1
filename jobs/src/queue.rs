//! The job queue: apalis on PostgreSQL (see docs/decisions/0003-job-queue.md).
//!
//! Jobs live in the `apalis` schema of the primary, so enqueueing can share
//! a transaction with our own rows (the push collapse row and its job commit
//! together), and a job that is acknowledged by `push` survives any crash.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{PollWith, Strategy, TaskBuilder};
use apalis_postgres::{Config, PostgresStorage, Pubsub};
use duet_common::Settings;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// Alert pushes and silent badge updates.
pub const PUSH_QUEUE: &str = "duet.push";
/// Batches of `users.last_seen_at` writes.
pub const LASTSEEN_QUEUE: &str = "duet.lastseen";

/// Applies apalis's own migrations (schema `apalis`, its own migrations
/// table `apalis._sqlx_migrations`). Safe when several processes start at
/// once: sqlx's migrator holds a PostgreSQL advisory lock while it creates
/// the schema and applies migrations.
pub async fn setup(db: &PgPool) -> anyhow::Result<()> {
    PostgresStorage::setup(db).await.context("Failed to apply the job queue's migrations")
}

/// Puts one job on `queue`, to run after `delay` (rounded up to a whole
/// second: apalis stores `run_at` in seconds). apalis itself never retries these
/// (`max_attempts` 1): our handlers reschedule with their own backoff, and a
/// job whose worker died is re-run by apalis's orphan recovery.
pub async fn push<T: Serialize>(conn: &mut PgConnection, queue: &str, job: &T, delay: Duration, max_attempts: usize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(job).context("Failed to encode a job")?;
    let mut task = TaskBuilder::new(bytes).max_attempts(max_attempts);
    if !delay.is_zero() {
        // Rounded up, so a job never runs before its delay (a Retry-After).
        let due = std::time::SystemTime::now() + delay;
        let due = due.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        task = task.run_at_timestamp(due.as_secs() + u64::from(due.subsec_nanos() > 0));
    }
    let task = task.build();
    apalis_postgres::queries::push_tasks(conn, queue, vec![task]).await.context("Failed to enqueue a job")
}

/// The storage a worker of `queue` polls: woken at once by LISTEN/NOTIFY for
/// new jobs, and every `DUET_JOBS_POLL_MS` for delayed ones (retries).
pub fn storage<T>(db: &PgPool, settings: &Settings, queue: &str) -> PollWith<PostgresStorage<T>, Strategy> {
    let config = Config::default()
        .queue(queue)
        .batch_size(16)
        .heartbeat_interval(Duration::from_secs(settings.jobs_heartbeat_secs.max(1)))
        .missed_heartbeats(3);
    let storage = PostgresStorage::<T>::new(db).with_config(config);
    let strategy =
        Strategy::new().stream(Pubsub::new(db.clone(), queue.to_owned())).interval(Duration::from_millis(settings.jobs_poll_ms.max(10)));
    PollWith::new(storage, strategy)
}

/// A job given up on, as recorded by apalis.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadJob {
    pub id: String,
    pub queue: String,
    pub job: serde_json::Value,
    pub last_result: Option<serde_json::Value>,
    pub attempts: i32,
}

/// Jobs that failed their last attempt (or failed permanently), newest last.
pub async fn dead_jobs(db: &PgPool) -> anyhow::Result<Vec<DeadJob>> {
    sqlx::query_as(
        "select id, job_type as queue, convert_from(job, 'UTF8')::jsonb as job, last_result, attempts \
         from apalis.jobs where status in ('Failed', 'Killed') and attempts >= max_attempts \
         and job_type in ('duet.push', 'duet.lastseen') order by done_at",
    )
    .fetch_all(db)
    .await
    .context("Failed to list dead jobs")
}

/// Deletes finished jobs: done ones after a day, dead ones after 30 days
/// (they stay queryable for a month). apalis keeps every row otherwise.
pub async fn prune_finished(db: &PgPool) -> sqlx::Result<u64> {
    sqlx::query(
        "delete from apalis.jobs where job_type in ('duet.push', 'duet.lastseen') and ( \
           (status = 'Done' and done_at < now() - interval '1 day') \
           or (status in ('Failed', 'Killed') and attempts >= max_attempts and done_at < now() - interval '30 days'))",
    )
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}
