//! Changes to stored messages: edit and unsend (delete for everyone) here,
//! reactions and delete-for-me in [`crate::reactions`].
//!
//! Each change is one transaction opened by its handler: lock the
//! conversation row (the lock appends take, so a conversation's appends and
//! changes are ordered), check the rules, move the conversation's change
//! counter (`conversations.last_change`, the sync cursor for changes), write
//! the change and its outbox event, commit once. The caller publishes it
//! live after the commit ([`crate::Commands`]). Changes are not
//! group-committed like sends: they are rare next to them.
//!
//! An unsend erases the content wherever PostgreSQL holds it: the message
//! row (text, payload, reply), its reactions, the outbox copies of its
//! content (its `message_appended` and `message_edited` events, and the
//! previews of replies quoting it), all in the same transaction. What
//! cannot be erased is listed in `docs/security.md`.

use chrono::{DateTime, Utc};
use duet_common::domain::{Message, validate_text};
use duet_common::error::ErrorCode;
use duet_common::events::DomainEvent;
use duet_common::ids::{ConversationId, MessageId, UserId};
use duet_common::protocol::ChangeKind;
use duet_common::reactions::validate_client_edit_id;
use duet_common::{ApiError, block_refusal_sql, message_columns};
use sqlx::{PgPool, Postgres, Transaction};

use crate::appender::{now_micros, write_outbox};

/// A message after a change, and whether this call made it (false: a
/// retry, or nothing to do; the message as it is now).
#[derive(Clone, Debug)]
pub struct Changed {
    pub message: Message,
    pub change: ChangeKind,
    pub fresh: bool,
}

/// An edit as a client asks for it.
#[derive(Clone, Debug)]
pub struct EditRequest {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub client_edit_id: String,
    pub text: String,
}

/// A change's transaction, holding the conversation's row lock.
pub(crate) struct Locked<'c> {
    pub tx: Transaction<'c, Postgres>,
    pub conversation_id: ConversationId,
    /// The other member.
    pub peer: UserId,
}

/// Opens the transaction and locks the conversation, if `user` is a member.
pub(crate) async fn lock(db: &PgPool, user: UserId, conversation_id: ConversationId) -> Result<Locked<'static>, ApiError> {
    let mut tx = db.begin().await?;
    let pair: Option<(UserId, UserId)> = sqlx::query_as("select user_lo, user_hi from conversations where id = $1 for update")
        .bind(conversation_id)
        .fetch_optional(&mut *tx)
        .await?;
    match pair {
        Some((lo, hi)) if user == lo => Ok(Locked { tx, conversation_id, peer: hi }),
        Some((lo, hi)) if user == hi => Ok(Locked { tx, conversation_id, peer: lo }),
        _ => Err(ApiError::conversation_not_found()),
    }
}

impl Locked<'_> {
    /// The message as it is now, if the conversation holds it.
    pub async fn message(&mut self, id: MessageId) -> Result<Message, ApiError> {
        sqlx::query_as(concat!("select ", message_columns!(), " from messages where id = $1 and conversation_id = $2"))
            .bind(id)
            .bind(self.conversation_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::MessageNotFound, "no such message in this conversation"))
    }

    /// The conversation's next change position.
    pub async fn next_change(&mut self) -> Result<i64, ApiError> {
        Ok(sqlx::query_scalar("update conversations set last_change = last_change + 1 where id = $1 returning last_change")
            .bind(self.conversation_id)
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// Refuses when `user` and the peer blocked each other, either way (as sends are refused).
    pub async fn not_blocked(&mut self, user: UserId) -> Result<(), ApiError> {
        let refusal: Option<String> =
            sqlx::query_scalar(concat!("select ", block_refusal_sql!())).bind(user).bind(self.peer).fetch_one(&mut *self.tx).await?;
        match refusal {
            Some(refusal) => Err(duet_common::privacy::block_refusal(&refusal)),
            None => Ok(()),
        }
    }

    /// Writes `event` to the outbox and commits.
    pub async fn commit(mut self, event: DomainEvent) -> Result<(), ApiError> {
        write_outbox(&mut self.tx, [event]).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// Only the sender changes the content of a message, and only within the edit window.
fn sender_within_window(message: &Message, user: UserId, window_secs: u64, now: DateTime<Utc>) -> Result<(), ApiError> {
    if message.sender_id != user {
        return Err(ApiError::new(ErrorCode::NotMessageSender, "only the sender of a message may edit or unsend it"));
    }
    let age = now.signed_duration_since(message.created_at);
    if age.num_seconds() >= i64::try_from(window_secs).unwrap_or(i64::MAX) {
        return Err(ApiError::new(
            ErrorCode::EditWindowClosed,
            format!("messages can be edited or unsent for {window_secs} s after sending"),
        ));
    }
    Ok(())
}

/// Edits the text of the caller's own message. A retry with the same
/// `clientEditId` gets the message as it is now; the same id for another
/// message, or another text while this edit is still the latest, is a conflict.
pub async fn edit(db: &PgPool, window_secs: u64, user: UserId, request: EditRequest) -> Result<Changed, ApiError> {
    validate_client_edit_id(&request.client_edit_id)?;
    let text = validate_text(&request.text)?;
    let mut locked = lock(db, user, request.conversation_id).await?;
    let earlier: Option<(MessageId, i32)> =
        sqlx::query_as("select message_id, edit_count from message_edits where sender_id = $1 and client_edit_id = $2")
            .bind(user)
            .bind(&request.client_edit_id)
            .fetch_optional(&mut *locked.tx)
            .await?;
    if let Some((edited, count)) = earlier {
        let conflict = || {
            ApiError::new(
                ErrorCode::IdempotencyConflict,
                format!("clientEditId `{}` was already used for another edit", request.client_edit_id),
            )
        };
        if edited != request.message_id {
            return Err(conflict());
        }
        let message = locked.message(edited).await?;
        // Old texts are not kept: the text can be compared only while this edit is the latest.
        if message.edit_count == count && message.deleted_at.is_none() && message.text.as_deref() != Some(text.as_str()) {
            return Err(conflict());
        }
        return Ok(Changed { message, change: ChangeKind::Edited, fresh: false });
    }
    let message = locked.message(request.message_id).await?;
    let now = now_micros();
    sender_within_window(&message, user, window_secs, now)?;
    if message.deleted_at.is_some() {
        return Err(ApiError::new(ErrorCode::MessageDeleted, "the message was unsent"));
    }
    locked.not_blocked(user).await?;
    let change = locked.next_change().await?;
    let count: i32 = sqlx::query_scalar(
        "update messages set text = $2, edited_at = $3, edit_count = edit_count + 1, change_seq = $4 \
         where conversation_id = $5 and id = $1 returning edit_count",
    )
    .bind(message.id)
    .bind(&text)
    .bind(now)
    .bind(change)
    .bind(message.conversation_id)
    .fetch_one(&mut *locked.tx)
    .await?;
    sqlx::query(
        "insert into message_edits (sender_id, client_edit_id, message_id, edit_count, created_at, conversation_id) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user)
    .bind(&request.client_edit_id)
    .bind(message.id)
    .bind(count)
    .bind(now)
    .bind(message.conversation_id)
    .execute(&mut *locked.tx)
    .await?;
    let message = locked.message(message.id).await?;
    locked.commit(DomainEvent::MessageEdited { message: message.clone() }).await?;
    Ok(Changed { message, change: ChangeKind::Edited, fresh: true })
}

/// Unsends the caller's own message: a tombstone for both members, its
/// content erased (see the module docs). Unsending a tombstone again
/// answers the same tombstone. A block does not stop an unsend: it only
/// removes content.
pub async fn unsend(
    db: &PgPool,
    window_secs: u64,
    user: UserId,
    conversation_id: ConversationId,
    message_id: MessageId,
) -> Result<Changed, ApiError> {
    let mut locked = lock(db, user, conversation_id).await?;
    let message = locked.message(message_id).await?;
    if message.deleted_at.is_some() && message.sender_id == user {
        return Ok(Changed { message, change: ChangeKind::Deleted, fresh: false });
    }
    let now = now_micros();
    sender_within_window(&message, user, window_secs, now)?;
    let change = locked.next_change().await?;
    sqlx::query(
        "update messages set text = null, payload = null, reply_to = null, deleted_at = $2, change_seq = $3 \
         where conversation_id = $4 and id = $1",
    )
    .bind(message_id)
    .bind(now)
    .bind(change)
    .bind(conversation_id)
    .execute(&mut *locked.tx)
    .await?;
    sqlx::query("delete from message_reactions where message_id = $1").bind(message_id).execute(&mut *locked.tx).await?;
    erase_outbox_copies(&mut locked.tx, message_id, now).await?;
    let message = locked.message(message_id).await?;
    locked.commit(DomainEvent::MessageDeleted { message: message.clone() }).await?;
    Ok(Changed { message, change: ChangeKind::Deleted, fresh: true })
}

/// Removes the content of `message_id` from the outbox: the text, payload
/// and reply preview of its own events, and its text in the previews of
/// the replies quoting it (both found by index, `0014_message_changes.sql`).
async fn erase_outbox_copies(tx: &mut Transaction<'_, Postgres>, message_id: MessageId, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let id = message_id.to_string();
    sqlx::query(
        "update outbox set payload = payload #- '{message,text}' #- '{message,payload}' #- '{message,replyTo}' \
         where (payload #>> '{message,id}') = $1 and event_type in ('message_appended', 'message_edited')",
    )
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "update outbox set payload = jsonb_set(payload #- '{message,replyTo,text}', '{message,replyTo,deletedAt}', to_jsonb($2::text)) \
         where (payload #>> '{message,replyTo,id}') = $1",
    )
    .bind(&id)
    .bind(at.to_rfc3339())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
