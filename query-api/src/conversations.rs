//! Conversation lists and single conversations, as each member sees them.
//!
//! Served from the Redis projection; when it is cold (being rebuilt) or
//! Redis does not answer, the same content is computed from PostgreSQL
//! (the primary: slower, never staler). Both order by last activity, then
//! id, descending, and share one cursor format, so a client may page across
//! a switch between them.

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::domain::{Message, Peer};
use duet_common::error::ErrorCode;
use duet_common::ids::{ConversationId, UserId};
use duet_common::message_columns;
use duet_common::read_model::{self as read, Entry, Position, is_ready};
use poem_openapi::Object;
use serde::Serialize;
use sqlx::PgPool;

use crate::Queries;

/// One conversation in the caller's list.
#[derive(Clone, Debug, PartialEq, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub peer: Peer,
    /// The newest message; absent while the conversation is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// Seq of the newest message; 0 when empty.
    pub last_seq: i64,
    /// Messages to the caller after their read marker.
    pub unread_count: i64,
    pub last_read_seq: i64,
    pub last_delivered_seq: i64,
    pub peer_last_read_seq: i64,
    pub peer_last_delivered_seq: i64,
    /// Last activity: the newest message, or creation.
    pub updated_at: DateTime<Utc>,
}

/// A page of the caller's conversations.
#[derive(Clone, Debug, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// `<updated µs>_<conversation id>`: where the next page starts.
pub fn encode_cursor(p: Position) -> String {
    format!("{}_{}", p.updated_micros, p.conversation_id)
}

pub fn decode_cursor(cursor: &str) -> Result<Position, ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidCursor, "`cursor` is not one this API returned");
    let (micros, id) = cursor.split_once('_').ok_or_else(invalid)?;
    Ok(Position { updated_micros: micros.parse().map_err(|_| invalid())?, conversation_id: id.parse().map_err(|_| invalid())? })
}

/// The caller's conversations, most recently active first.
pub async fn list(q: &Queries, user: UserId, cursor: Option<&str>, limit: Option<u32>) -> Result<ConversationPage, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidLimit, format!("`limit` must be between 1 and {MAX_LIMIT}")));
    }
    let after = cursor.map(decode_cursor).transpose()?;
    let (entries, more) = match from_redis(q, user, after, limit as usize).await {
        Some(found) => found,
        None => from_postgres(&q.ctx.db, user, None, after, limit as i64).await?,
    };
    let next_cursor = more
        .then(|| {
            entries
                .last()
                .map(|e| encode_cursor(Position { updated_micros: e.updated_at.timestamp_micros(), conversation_id: e.conversation_id }))
        })
        .flatten();
    Ok(ConversationPage { items: summaries(q, entries).await?, next_cursor })
}

/// One conversation of the caller; `conversation_not_found` if not theirs.
pub async fn get(q: &Queries, user: UserId, conversation: ConversationId) -> Result<ConversationSummary, ApiError> {
    q.cache.peer_in(conversation, user).await?;
    let projected = match is_ready(&q.ctx).await {
        Ok(true) => read::entry(&q.ctx, user, conversation).await.ok().flatten(),
        _ => None,
    };
    let entry = match projected {
        Some(entry) => entry,
        None => from_postgres(&q.ctx.db, user, Some(conversation), None, 1).await?.0.pop().ok_or_else(ApiError::conversation_not_found)?,
    };
    Ok(summaries(q, vec![entry]).await?.remove(0))
}

/// `None` when the projection cannot answer (cold, or Redis down).
async fn from_redis(q: &Queries, user: UserId, after: Option<Position>, limit: usize) -> Option<(Vec<Entry>, bool)> {
    match is_ready(&q.ctx).await {
        Ok(true) => {}
        Ok(false) => {
            q.metrics.list_source("postgres_cold");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "Redis unavailable; listing conversations from PostgreSQL");
            q.metrics.list_source("postgres_redis_down");
            return None;
        }
    }
    match read::list(&q.ctx, user, after, limit).await {
        Ok(found) => {
            q.metrics.list_source("redis");
            Some(found)
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "projection read failed; listing conversations from PostgreSQL");
            q.metrics.list_source("postgres_redis_down");
            None
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: ConversationId,
    peer_id: UserId,
    last_seq: i64,
    updated_at: DateTime<Utc>,
    unread: i64,
    my_delivered: i64,
    my_read: i64,
    peer_delivered: i64,
    peer_read: i64,
}

/// The projection's content, computed from PostgreSQL.
async fn from_postgres(
    db: &PgPool,
    user: UserId,
    only: Option<ConversationId>,
    after: Option<Position>,
    limit: i64,
) -> Result<(Vec<Entry>, bool), ApiError> {
    let after_time = after.map(|p| DateTime::from_timestamp_micros(p.updated_micros).unwrap_or_default());
    let rows: Vec<Row> = sqlx::query_as(
        "select c.id, m.peer_id, c.last_seq, c.updated_at, \
                m.last_delivered_seq as my_delivered, m.last_read_seq as my_read, \
                p.last_delivered_seq as peer_delivered, p.last_read_seq as peer_read, \
                (select count(*) from unread_messages u where u.user_id = m.user_id and u.conversation_id = c.id) as unread \
         from conversation_members m \
         join conversations c on c.id = m.conversation_id \
         join conversation_members p on p.conversation_id = m.conversation_id and p.user_id = m.peer_id \
         where m.user_id = $1 and ($2::uuid is null or c.id = $2) \
           and ($3::timestamptz is null or (c.updated_at, c.id) < ($3, $4)) \
         order by c.updated_at desc, c.id desc limit $5",
    )
    .bind(user)
    .bind(only)
    .bind(after_time)
    .bind(after.map(|p| p.conversation_id))
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let with_messages: Vec<&Row> = rows.iter().filter(|r| r.last_seq > 0).collect();
    let mut last: std::collections::HashMap<ConversationId, Message> = sqlx::query_as::<_, Message>(concat!(
        "select ",
        message_columns!(),
        " from messages where (conversation_id, seq) in (select * from unnest($1::uuid[], $2::int8[]))"
    ))
    .bind(with_messages.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(with_messages.iter().map(|r| r.last_seq).collect::<Vec<_>>())
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|m| (m.conversation_id, m))
    .collect();
    let entries = rows
        .iter()
        .map(|r| Entry {
            conversation_id: r.id,
            peer_id: r.peer_id,
            last_seq: r.last_seq,
            last_message: last.remove(&r.id),
            unread: r.unread,
            my_delivered: r.my_delivered,
            my_read: r.my_read,
            peer_delivered: r.peer_delivered,
            peer_read: r.peer_read,
            updated_at: r.updated_at,
        })
        .collect();
    Ok((entries, more))
}

async fn summaries(q: &Queries, entries: Vec<Entry>) -> Result<Vec<ConversationSummary>, ApiError> {
    let peers: Vec<UserId> = entries.iter().map(|e| e.peer_id).collect();
    let names = q.cache.names(&peers).await?;
    Ok(entries
        .into_iter()
        .map(|e| ConversationSummary {
            id: e.conversation_id,
            peer: Peer { id: e.peer_id, name: names.get(&e.peer_id).cloned().unwrap_or_default() },
            last_message: e.last_message,
            last_seq: e.last_seq,
            unread_count: e.unread,
            last_read_seq: e.my_read,
            last_delivered_seq: e.my_delivered,
            peer_last_read_seq: e.peer_read,
            peer_last_delivered_seq: e.peer_delivered,
            updated_at: e.updated_at,
        })
        .collect())
}
