//! The gateway's reads from PostgreSQL. All on the primary (`ctx.db`):
//! sync and gap repair must see every acknowledged message.

use duet_common::ApiError;
use duet_common::domain::Message;
use duet_common::ids::{ConversationId, MessageId, UserId};
use duet_common::message_columns;
use sqlx::PgPool;

/// Messages of a conversation with `after < seq < before`, oldest first, at most `limit`.
pub async fn messages_between(
    db: &PgPool,
    conversation_id: ConversationId,
    after: i64,
    before: i64,
    limit: i64,
) -> Result<Vec<Message>, ApiError> {
    Ok(sqlx::query_as(concat!(
        "select ",
        message_columns!(),
        " from messages where conversation_id = $1 and seq > $2 and seq < $3 order by seq limit $4"
    ))
    .bind(conversation_id)
    .bind(after)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Messages of a conversation after `after` as `user` sees them, oldest
/// first, at most `limit`: sync's new messages. A message the user hid
/// comes as its stub ([`Message::into_hidden_stub`]), so the seqs a client
/// holds stay gap-free.
pub async fn visible_after(
    db: &PgPool,
    user: UserId,
    conversation_id: ConversationId,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>, ApiError> {
    let messages: Vec<Message> = sqlx::query_as(concat!(
        "select ",
        message_columns!(),
        ", (select h.created_at from message_hides h where h.user_id = $4 and h.message_id = messages.id) as hidden_at \
         from messages where conversation_id = $1 and seq > $2 order by seq limit $3"
    ))
    .bind(conversation_id)
    .bind(after)
    .bind(limit)
    .bind(user)
    .fetch_all(db)
    .await?;
    Ok(messages
        .into_iter()
        .map(|m| match m.hidden_at {
            Some(at) => m.into_hidden_stub(at),
            None => m,
        })
        .collect())
}

/// Messages up to `up_to_seq` (those a device holds) that changed after
/// `after_change`, as `user` sees them now, in change order, at most `limit`.
pub async fn changed_since(
    db: &PgPool,
    user: UserId,
    conversation_id: ConversationId,
    up_to_seq: i64,
    after_change: i64,
    limit: i64,
) -> Result<Vec<Message>, ApiError> {
    Ok(sqlx::query_as(concat!(
        "select ",
        message_columns!(),
        " from messages where conversation_id = $1 and change_seq > $2 and seq <= $3 \
           and not exists (select 1 from message_hides h where h.user_id = $5 and h.message_id = messages.id) \
         order by change_seq limit $4"
    ))
    .bind(conversation_id)
    .bind(after_change)
    .bind(up_to_seq)
    .bind(limit)
    .bind(user)
    .fetch_all(db)
    .await?)
}

/// Messages `user` hid after `after_change`, with the hide's change position, in change order.
pub async fn hidden_since(
    db: &PgPool,
    user: UserId,
    conversation_id: ConversationId,
    after_change: i64,
    limit: i64,
) -> Result<Vec<(MessageId, i64)>, ApiError> {
    Ok(sqlx::query_as(
        "select message_id, change_seq from message_hides \
         where user_id = $1 and conversation_id = $2 and change_seq > $3 order by change_seq limit $4",
    )
    .bind(user)
    .bind(conversation_id)
    .bind(after_change)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The user's delivered marker in a conversation (0 if not a member).
pub async fn delivered_marker(db: &PgPool, user_id: UserId, conversation_id: ConversationId) -> Result<i64, ApiError> {
    let marker: Option<i64> =
        sqlx::query_scalar("select last_delivered_seq from conversation_members where conversation_id = $1 and user_id = $2")
            .bind(conversation_id)
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    Ok(marker.unwrap_or(0))
}

/// Every conversation of the user: `(id, last_seq, user's delivered marker)`.
pub async fn positions(db: &PgPool, user_id: UserId) -> Result<Vec<(ConversationId, i64, i64)>, ApiError> {
    Ok(sqlx::query_as(
        "select m.conversation_id, c.last_seq, m.last_delivered_seq \
         from conversation_members m join conversations c on c.id = m.conversation_id where m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// Everyone the user shares a conversation with who may see the user's
/// presence (`presence_visible`, migration 0013).
pub async fn presence_viewers(db: &PgPool, user_id: UserId) -> Result<Vec<UserId>, ApiError> {
    Ok(sqlx::query_scalar("select peer_id from conversation_members where user_id = $1 and presence_visible(peer_id, $1)")
        .bind(user_id)
        .fetch_all(db)
        .await?)
}

/// The other member of a conversation the user is in.
pub async fn peer_in(db: &PgPool, user_id: UserId, conversation_id: ConversationId) -> Result<Option<UserId>, ApiError> {
    Ok(sqlx::query_scalar("select peer_id from conversation_members where conversation_id = $1 and user_id = $2")
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(db)
        .await?)
}

/// Of `candidates`, those the user shares a conversation with, with their
/// stored last-seen time, and whether the user may see their presence.
pub async fn peers_among(
    db: &PgPool,
    user_id: UserId,
    candidates: &[UserId],
) -> Result<Vec<(UserId, Option<chrono::DateTime<chrono::Utc>>, bool)>, ApiError> {
    Ok(sqlx::query_as(
        "select u.id, u.last_seen_at, presence_visible($1, u.id) from conversation_members m join users u on u.id = m.peer_id \
         where m.user_id = $1 and m.peer_id = any($2)",
    )
    .bind(user_id)
    .bind(candidates)
    .fetch_all(db)
    .await?)
}

/// A member's view of one conversation, for sync.
#[derive(Debug, sqlx::FromRow)]
pub struct SyncRow {
    pub conversation_id: ConversationId,
    pub last_seq: i64,
    /// The conversation's change counter (sync's `lastChange`).
    pub last_change: i64,
    pub last_delivered_seq: i64,
    pub peer_last_delivered_seq: i64,
    pub peer_last_read_seq: i64,
}

macro_rules! sync_row {
    () => {
        "select m.conversation_id, c.last_seq, c.last_change, m.last_delivered_seq, \
      p.last_delivered_seq as peer_last_delivered_seq, p.last_read_seq as peer_last_read_seq \
    from conversation_members m \
    join conversations c on c.id = m.conversation_id \
    join conversation_members p on p.conversation_id = m.conversation_id and p.user_id = m.peer_id "
    };
}

/// The listed conversations the user is in.
pub async fn sync_rows(db: &PgPool, user_id: UserId, conversations: &[ConversationId]) -> Result<Vec<SyncRow>, ApiError> {
    Ok(sqlx::query_as(concat!(sync_row!(), "where m.user_id = $1 and m.conversation_id = any($2)"))
        .bind(user_id)
        .bind(conversations)
        .fetch_all(db)
        .await?)
}

/// Up to `limit` conversations with messages past the user's delivered marker, most recent first.
pub async fn pending_rows(db: &PgPool, user_id: UserId, limit: i64) -> Result<Vec<SyncRow>, ApiError> {
    Ok(sqlx::query_as(concat!(
        sync_row!(),
        "where m.user_id = $1 and c.last_seq > m.last_delivered_seq order by c.updated_at desc limit $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Messages sent to the user after their read marker (`unread_messages`).
pub async fn unread_count(db: &PgPool, user_id: UserId, conversation_id: ConversationId) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar("select count(*) from unread_messages where user_id = $1 and conversation_id = $2")
        .bind(user_id)
        .bind(conversation_id)
        .fetch_one(db)
        .await?)
}
