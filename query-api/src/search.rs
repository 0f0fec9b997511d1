//! Full-text search over the caller's own messages (sent or received).
//!
//! PostgreSQL full-text search with the `simple` configuration (no
//! stemming: chats mix languages) over `messages_text_search_idx`, with
//! web-search syntax (`"exact phrase"`, `-not`, `or`). Served by the replicas
//! in turn when there are any, so it may trail the newest writes by the
//! replication lag; the primary answers if every replica is down.
//!
//! Only current text is indexed (an edit replaces it, an unsend erases it),
//! so old and unsent text is never found; messages the caller hid are left out.

use duet_common::domain::Message;
use duet_common::error::ErrorCode;
use duet_common::ids::UserId;
use duet_common::{ApiError, message_columns};
use poem_openapi::Object;
use serde::Serialize;
use sqlx::PgPool;

use crate::Queries;

pub const MAX_QUERY_CHARS: usize = 200;
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

#[derive(Clone, Debug, Serialize, Object)]
pub struct SearchResults {
    /// Matches, newest first.
    pub items: Vec<Message>,
}

pub async fn search(q: &Queries, user: UserId, text: &str, limit: Option<i64>) -> Result<SearchResults, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_QUERY_CHARS || text.contains('\0') {
        return Err(ApiError::new(ErrorCode::InvalidQuery, format!("`q` must be 1 to {MAX_QUERY_CHARS} characters, without NUL")));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidLimit, format!("`limit` must be between 1 and {MAX_LIMIT}")));
    }
    for replica in q.ctx.replicas.in_turn() {
        match run(&replica.pool, user, text, limit).await {
            Ok(items) => {
                q.metrics.history_source("replica");
                q.metrics.replica_read(&replica.name);
                return Ok(SearchResults { items });
            }
            Err(e) => replica.mark_down(&e),
        }
    }
    q.metrics.history_source(if q.ctx.replicas.any() { "primary_fallback" } else { "primary" });
    Ok(SearchResults { items: run(&q.ctx.db, user, text, limit).await? })
}

async fn run(db: &PgPool, user: UserId, text: &str, limit: i64) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        message_columns!(),
        " from messages where (sender_id = $1 or receiver_id = $1) \
           and to_tsvector('simple', coalesce(text, '')) @@ websearch_to_tsquery('simple', $2) \
           and not exists (select 1 from message_hides h where h.user_id = $1 and h.message_id = messages.id) \
         order by created_at desc, id desc limit $3"
    ))
    .bind(user)
    .bind(text)
    .bind(limit)
    .fetch_all(db)
    .await
}
