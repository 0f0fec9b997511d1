//! Message history by keyset on seq, read from the replica with
//! read-your-writes.
//!
//! A client passes the newest seq it knows exists (`afterSeq`, or a
//! `minSeq` hint, e.g. the seq its own send was acknowledged with). The
//! replica serves the page only once its copy of the conversation has
//! reached that seq; otherwise we wait briefly for replay and then fall back
//! to the primary, counting which in `duet_query_history_reads_total{source}`.
//! The check and the page run on one connection, which also reports
//! `pg_is_in_recovery()`, so the response says truthfully who served it.

use duet_common::error::ErrorCode;
use duet_common::ids::{ConversationId, UserId};
use std::time::{Duration, Instant};

use duet_common::domain::Message;
use duet_common::{ApiError, AppContext, message_columns};
use poem_openapi::Object;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// How long a read waits for the replica to catch up before using the primary.
pub const REPLICA_WAIT: Duration = Duration::from_millis(300);
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

/// A page of messages, oldest first.
#[derive(Clone, Debug, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// More messages lie beyond this page in the direction of travel
    /// (older without `afterSeq`, newer with it).
    pub has_more: bool,
}

/// What the client asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageRequest {
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub min_seq: Option<i64>,
    pub limit: Option<i64>,
}

/// Which server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Replica,
    Primary,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Replica => "replica",
            Source::Primary => "primary",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// `host:port` of a configured replica: one value per replica.
    pub replica: String,
}

/// Counts of where reads were served from.
#[derive(Clone)]
pub struct ReadMetrics {
    history: Family<SourceLabels, Counter>,
    replicas: Family<ReplicaLabels, Counter>,
    lists: Family<SourceLabels, Counter>,
}

impl ReadMetrics {
    pub fn register(ctx: &AppContext) -> Self {
        let m = ReadMetrics { history: Family::default(), replicas: Family::default(), lists: Family::default() };
        ctx.metrics.register(
            "query_history_reads",
            "History and search reads by source: replica, replica_after_wait, primary_fallback (replica behind), primary (no replica)",
            m.history.clone(),
        );
        ctx.metrics.register("query_replica_reads", "History and search reads served by each read replica", m.replicas.clone());
        for replica in ctx.replicas.names() {
            m.replica_read_counter(replica);
        }
        ctx.metrics.register(
            "query_conversation_lists",
            "Conversation list reads by source: redis, postgres_cold, postgres_redis_down",
            m.lists.clone(),
        );
        m
    }

    pub fn history_source(&self, source: &'static str) {
        self.history.get_or_create(&SourceLabels { source }).inc();
    }

    /// Counts a read `replica` served.
    pub fn replica_read(&self, replica: &str) {
        self.replica_read_counter(replica).inc();
    }

    fn replica_read_counter(&self, replica: &str) -> Counter {
        self.replicas.get_or_create(&ReplicaLabels { replica: replica.to_owned() }).clone()
    }

    pub fn list_source(&self, source: &'static str) {
        self.lists.get_or_create(&SourceLabels { source }).inc();
    }
}

/// Checks the request and returns (after, before, limit).
fn validate(req: &PageRequest) -> Result<(i64, i64, i64), ApiError> {
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidLimit, format!("`limit` must be between 1 and {MAX_LIMIT}")));
    }
    for (name, value) in [("beforeSeq", req.before_seq), ("afterSeq", req.after_seq), ("minSeq", req.min_seq)] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::new(ErrorCode::InvalidSeq, format!("`{name}` must not be negative")));
        }
    }
    let after = req.after_seq.unwrap_or(0);
    let before = req.before_seq.unwrap_or(i64::MAX);
    if after >= before {
        return Err(ApiError::new(ErrorCode::InvalidRange, "`afterSeq` must be below `beforeSeq`"));
    }
    Ok((after, before, limit))
}

/// A page of `conversation` as `viewer` sees it (membership already
/// checked; without the messages the viewer hid), and who served it.
pub async fn page(
    ctx: &AppContext,
    metrics: &ReadMetrics,
    conversation: ConversationId,
    viewer: UserId,
    req: PageRequest,
) -> Result<(MessagePage, Source), ApiError> {
    let (after, before, limit) = validate(&req)?;
    let need = req.after_seq.unwrap_or(0).max(req.min_seq.unwrap_or(0));
    if ctx.replicas.any() {
        let read = Read { conversation, viewer, need, after, before, limit, forward: req.after_seq.is_some() };
        if let Some(found) = from_replicas(ctx, metrics, &read).await {
            return Ok(found);
        }
        metrics.history_source("primary_fallback");
    } else {
        metrics.history_source("primary");
    }
    let mut conn = ctx.db.acquire().await?;
    let (_, in_recovery) = replica_state(&mut conn, conversation).await?;
    let page = fetch(&mut conn, conversation, viewer, after, before, limit, req.after_seq.is_some()).await?;
    Ok((page, source_of(in_recovery)))
}

/// One history read: whose, which page, and the seq the server must have.
struct Read {
    conversation: ConversationId,
    viewer: UserId,
    need: i64,
    after: i64,
    before: i64,
    limit: i64,
    forward: bool,
}

/// The page from the first replica in turn that has reached `need`; the
/// others are tried next (a failed one is left out for a while), and while
/// every reachable replica is behind, they are asked again until
/// [`REPLICA_WAIT`]. `None` when none could serve it: the primary must.
async fn from_replicas(ctx: &AppContext, metrics: &ReadMetrics, read: &Read) -> Option<(MessagePage, Source)> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        let mut behind = None;
        for replica in ctx.replicas.in_turn() {
            match from_replica(&replica.pool, read).await {
                Ok(Ok(found)) => {
                    metrics.history_source(if waited { "replica_after_wait" } else { "replica" });
                    metrics.replica_read(&replica.name);
                    return Some(found);
                }
                Ok(Err(replica_seq)) => behind = Some(replica_seq),
                Err(e) => replica.mark_down(&e),
            }
        }
        let Some(replica_seq) = behind else {
            tracing::warn!("no read replica available; reading history from the primary");
            return None;
        };
        if started.elapsed() >= REPLICA_WAIT {
            tracing::info!(conversation = %read.conversation, need = read.need, replica_seq, "replicas behind the client's seq; reading from the primary");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited = true;
    }
}

/// The page from this replica, or the seq it has reached if that is below
/// what the read needs. The check and the page run on one connection.
async fn from_replica(pool: &PgPool, read: &Read) -> Result<Result<(MessagePage, Source), i64>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let (replica_seq, in_recovery) = replica_state(&mut conn, read.conversation).await?;
    if replica_seq < read.need {
        return Ok(Err(replica_seq));
    }
    let page = fetch(&mut conn, read.conversation, read.viewer, read.after, read.before, read.limit, read.forward).await?;
    Ok(Ok((page, source_of(in_recovery))))
}

/// The conversation's newest seq on this server (-1 if it has not arrived
/// yet), and whether this server is a replica.
async fn replica_state(conn: &mut PgConnection, conversation: ConversationId) -> Result<(i64, bool), sqlx::Error> {
    sqlx::query_as("select coalesce((select last_seq from conversations where id = $1), -1), pg_is_in_recovery()")
        .bind(conversation)
        .fetch_one(conn)
        .await
}

fn source_of(in_recovery: bool) -> Source {
    if in_recovery { Source::Replica } else { Source::Primary }
}

async fn fetch(
    conn: &mut PgConnection,
    conversation: ConversationId,
    viewer: UserId,
    after: i64,
    before: i64,
    limit: i64,
    forward: bool,
) -> Result<MessagePage, sqlx::Error> {
    let mut items: Vec<Message> = if forward {
        sqlx::query_as(concat!(
            "select ",
            message_columns!(),
            " from messages where conversation_id = $1 and seq > $2 and seq < $3 \
               and not exists (select 1 from message_hides h where h.user_id = $5 and h.message_id = messages.id) \
             order by seq limit $4"
        ))
    } else {
        sqlx::query_as(concat!(
            "select ",
            message_columns!(),
            " from messages where conversation_id = $1 and seq > $2 and seq < $3 \
               and not exists (select 1 from message_hides h where h.user_id = $5 and h.message_id = messages.id) \
             order by seq desc limit $4"
        ))
    }
    .bind(conversation)
    .bind(after)
    .bind(before)
    .bind(limit + 1)
    .bind(viewer)
    .fetch_all(conn)
    .await?;
    let has_more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    if !forward {
        items.reverse();
    }
    Ok(MessagePage { items, has_more })
}
