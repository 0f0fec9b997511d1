//! PostgreSQL pools and migrations.

use std::future::Future;
use std::time::Duration;

use crate::error::ApiError;
use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Creates the database named in `url` if it does not exist yet.
///
/// Several processes may race here; losing the race is fine.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    if Postgres::database_exists(url).await.context("Failed to check whether the database exists")? {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => Ok(()),
        // Another process created it first (42P04, or 23505 when the two
        // inserts into pg_database race).
        Err(e) if Postgres::database_exists(url).await.unwrap_or(false) => {
            tracing::debug!(error = %e, "database created concurrently");
            Ok(())
        }
        Err(e) => Err(e).context("Failed to create the database"),
    }
}

/// A pool on the primary.
pub async fn connect(url: &str, size: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("Failed to parse DATABASE_URL")?;
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| Box::pin(async move { warm_up(conn).await }))
        .connect_with(options.application_name("duet"))
        .await
        .context("Failed to connect to PostgreSQL")
}

/// Plans the write functions (their current definitions: see
/// `migrations/README.md`) on a new connection. Each backend compiles and
/// plans them on first call (see `docs/benchmarks-log.md` for what that
/// cost): better at connect than in the first sends and receipts it serves.
/// Empty batches touch no row. Without the functions (a database not yet
/// migrated) there is nothing to plan. A warm-up that fails (a function
/// whose arguments changed) is logged and the connection kept: it is an
/// optimisation, never a reason to lose a connection.
async fn warm_up(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let planned = sqlx::raw_sql(
        "do $$ begin \
           if to_regproc('duet_append') is not null and to_regproc('duet_receipts') is not null then \
             perform * from duet_append('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', now(), '', 1); \
             perform * from duet_receipts('{}', '{}', '{}', '{}', now(), '', 1); \
           end if; \
         end $$",
    )
    .execute(conn)
    .await;
    if let Err(e) = planned {
        tracing::warn!(error = %e, "could not warm up the write functions on a new connection; going on without");
    }
    Ok(())
}

/// Applies pending migrations over a connection of its own. sqlx holds an
/// advisory lock meanwhile, so processes that start together apply them
/// once. Run before [`connect`]: a pool connection's warm-up calls the write
/// functions, and those locks taken while another process migrates can
/// deadlock with its DDL.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let options: PgConnectOptions = url.parse().context("Failed to parse DATABASE_URL")?;
    let mut conn =
        PgConnection::connect_with(&options.application_name("duet-migrate")).await.context("Failed to connect to PostgreSQL")?;
    MIGRATOR.run(&mut conn).await.context("Failed to apply migrations")?;
    let _ = conn.close().await;
    Ok(())
}

/// A connection a long-lived writer keeps for itself.
///
/// sqlx's pool checks a connection with a round trip to PostgreSQL when it
/// hands it out and again when it takes it back, so a statement run through
/// the pool costs three round trips, and wakes the backend three times. An
/// append or receipt writer runs one statement per batch, back to back, on
/// a lane it keeps: one round trip each. A connection that fails other than with a
/// database error (an I/O or protocol error) is closed, and the next call
/// takes a fresh one from the pool, checked as usual; the writer retries
/// its statement there once (its statements are idempotent).
pub struct Lane {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    /// Counts batches that failed whole and were split into single requests
    /// (the slow path), when the owner wants them counted.
    splits: Option<prometheus_client::metrics::counter::Counter>,
}

impl Lane {
    pub fn new(pool: PgPool) -> Self {
        Lane { pool, conn: None, splits: None }
    }

    /// Counts each batch split into single requests on `splits`.
    pub fn counting_splits(mut self, splits: prometheus_client::metrics::counter::Counter) -> Self {
        self.splits = Some(splits);
        self
    }

    /// The lane's connection, taken from the pool if it has none.
    pub async fn conn(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// Passes `result` through, closing the connection if it failed in a
    /// way that may have left it broken.
    pub fn settle<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(e) = &result
            && is_broken(e)
            && let Some(mut conn) = self.conn.take()
        {
            tracing::debug!(error = %e, "closing a writer's connection after an error");
            conn.close_on_drop();
        }
        result
    }

    /// Whether the lane holds a connection (false after [`Lane::settle`] closed it).
    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Runs `batch` on the lane's connection. If the connection broke, the
    /// batch may or may not have committed: it runs once more on a fresh
    /// one, which is why a [`Batch`] must be idempotent.
    pub async fn run<B: Batch>(&mut self, batch: &B, requests: &[B::Request]) -> Result<Vec<Result<B::Output, ApiError>>, sqlx::Error> {
        let outcome = batch.run(self.conn().await?, requests).await;
        let outcome = self.settle(outcome);
        if outcome.is_err() && !self.is_open() {
            let again = batch.run(self.conn().await?, requests).await;
            return self.settle(again);
        }
        outcome
    }

    /// Runs the requests as one batch ([`Lane::run`]); if that fails, each
    /// alone, so one bad request cannot fail the others.
    pub async fn run_or_split<B: Batch>(&mut self, batch: &B, requests: &[B::Request]) -> Vec<Result<B::Output, ApiError>> {
        match self.run(batch, requests).await {
            Ok(outcomes) => return outcomes,
            Err(e) if requests.len() == 1 => return vec![batch.alone_failed(self, &requests[0], e).await],
            Err(e) => tracing::warn!(error = %e, size = requests.len(), "a {} batch failed; running its requests one by one", B::NAME),
        }
        if let Some(splits) = &self.splits {
            splits.inc();
        }
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(match self.run(batch, std::slice::from_ref(request)).await {
                Ok(mut one) => one.pop().expect("one outcome per request"),
                Err(e) => batch.alone_failed(self, request, e).await,
            });
        }
        outcomes
    }
}

/// A write that runs many requests in one transaction and answers each:
/// the append and receipt writers' statements. It must be idempotent
/// (appends settle on their idempotency keys, markers only move forward):
/// [`Lane::run`] runs it again after a connection broke mid-way.
pub trait Batch: Sync {
    /// Names the batch in logs.
    const NAME: &'static str;
    type Request: Sync;
    type Output: Send;

    fn run(
        &self,
        conn: &mut PgConnection,
        requests: &[Self::Request],
    ) -> impl Future<Output = Result<Vec<Result<Self::Output, ApiError>>, sqlx::Error>> + Send;

    /// A lone request failed: try again, or give up (the default).
    fn alone_failed(
        &self,
        _lane: &mut Lane,
        _request: &Self::Request,
        err: sqlx::Error,
    ) -> impl Future<Output = Result<Self::Output, ApiError>> + Send {
        async move { Err(err.into()) }
    }
}

/// Whether an error may have left the connection unusable: anything but an
/// error PostgreSQL reported, and of those, a connection exception (class
/// 08) or the server ending the session (57P01 to 57P05: shut down,
/// terminated, crashed).
fn is_broken(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => e.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => true,
    }
}

/// Whether a database error is a violation of the named constraint.
pub fn is_constraint_violation(err: &sqlx::Error, constraint: &str) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.constraint() == Some(constraint))
}
