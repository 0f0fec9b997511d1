//! The read replicas history and search are served from
//! (`DATABASE_REPLICA_URL`, a comma-separated list).
//!
//! Reads take the replicas in turn (round-robin), so each carries an equal
//! share. A replica that failed (down, restarting, unreachable) is left out
//! for [`DOWN_FOR`]: connecting to it would cost each read up to the pool's
//! acquire timeout, as sqlx retries a refused connection until then. The
//! reads then go to the others, and to the primary when none is left.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How long a replica that failed is left out before reads try it again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// How long a read waits for a connection to a replica: a replica is never
/// worth a long wait, the primary can answer instead.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// One read replica.
pub struct Replica {
    /// `host:port`, for logs and the per-replica read counter (bounded: one
    /// value per configured replica).
    pub name: String,
    pub pool: PgPool,
    down_until: Mutex<Option<Instant>>,
}

impl Replica {
    /// Leaves this replica out of reads for [`DOWN_FOR`].
    pub fn mark_down(&self, error: &sqlx::Error) {
        tracing::warn!(replica = %self.name, %error, "read replica failed; leaving it out for {DOWN_FOR:?}");
        *self.down_until.lock().expect("replica state lock") = Some(Instant::now() + DOWN_FOR);
    }

    fn is_up(&self, now: Instant) -> bool {
        self.down_until.lock().expect("replica state lock").is_none_or(|until| now >= until)
    }
}

/// The configured read replicas (none: reads use the primary).
#[derive(Default)]
pub struct Replicas {
    members: Vec<Replica>,
    next: AtomicUsize,
}

impl Replicas {
    /// Pools for each URL in the comma-separated `urls`, connecting on first
    /// use: a replica that is down at start-up must not stop the process.
    pub fn connect_lazy(urls: &str, size: u32) -> anyhow::Result<Self> {
        let members = parse_list(urls)?
            .into_iter()
            .map(|options| Replica {
                name: format!("{}:{}", options.get_host(), options.get_port()),
                pool: PgPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options.application_name("duet-replica")),
                down_until: Mutex::new(None),
            })
            .collect();
        Ok(Replicas { members, next: AtomicUsize::new(0) })
    }

    /// Whether any replica is configured.
    pub fn any(&self) -> bool {
        !self.members.is_empty()
    }

    /// The replicas that are not left out, starting with the next in turn:
    /// a read tries them in this order.
    pub fn in_turn(&self) -> impl Iterator<Item = &Replica> {
        let n = self.members.len();
        let start = if n == 0 { 0 } else { self.next.fetch_add(1, Ordering::Relaxed) % n };
        let now = Instant::now();
        (0..n).map(move |i| &self.members[(start + i) % n]).filter(move |r| r.is_up(now))
    }

    /// Every replica's name, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|r| r.name.as_str())
    }
}

/// Parses a comma-separated list of PostgreSQL URLs (blanks around commas
/// allowed), refusing an empty entry or one that does not parse.
fn parse_list(urls: &str) -> anyhow::Result<Vec<PgConnectOptions>> {
    urls.split(',')
        .enumerate()
        .map(|(i, url)| {
            let url = url.trim();
            anyhow::ensure!(!url.is_empty(), "DATABASE_REPLICA_URL: entry {} of the comma-separated list is empty", i + 1);
            url.parse().with_context(|| format!("DATABASE_REPLICA_URL: entry {} is not a PostgreSQL URL", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_names_each_replica_and_reads_take_them_in_turn() {
        let replicas = Replicas::connect_lazy("postgres://u@10.0.0.1:5433/duet, postgres://u@10.0.0.2:5434/duet", 1).unwrap();
        assert_eq!(replicas.names().collect::<Vec<_>>(), ["10.0.0.1:5433", "10.0.0.2:5434"]);
        let firsts: Vec<_> = (0..4).map(|_| replicas.in_turn().next().unwrap().name.clone()).collect();
        assert_eq!(firsts, ["10.0.0.1:5433", "10.0.0.2:5434", "10.0.0.1:5433", "10.0.0.2:5434"]);
    }

    #[tokio::test]
    async fn a_replica_marked_down_is_left_out() {
        let replicas = Replicas::connect_lazy("postgres://u@10.0.0.1:5433/duet,postgres://u@10.0.0.2:5434/duet", 1).unwrap();
        replicas.in_turn().next().unwrap().mark_down(&sqlx::Error::PoolTimedOut);
        for _ in 0..3 {
            assert_eq!(replicas.in_turn().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["10.0.0.2:5434"]);
        }
    }

    #[tokio::test]
    async fn one_url_is_a_list_of_one() {
        let replicas = Replicas::connect_lazy("postgres://u@127.0.0.1:5433/duet", 1).unwrap();
        assert_eq!(replicas.names().collect::<Vec<_>>(), ["127.0.0.1:5433"]);
    }

    #[test]
    fn an_empty_entry_is_refused_with_its_position() {
        let err = parse_list("postgres://u@h/d,,postgres://u@h/e").unwrap_err();
        assert!(err.to_string().contains("entry 2"), "{err}");
    }
}
