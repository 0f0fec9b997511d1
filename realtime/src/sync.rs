//! `chat.sync`: what a (re)connecting client lacks, read from the primary.
//!
//! With a list of `{conversationId, afterSeq}`, each listed conversation
//! from its cursor; without one, every conversation with messages past the
//! caller's delivered marker, from that marker. Each conversation returns at
//! most `limit` messages and says `hasMore`; the client pages with the list
//! form until `hasMore` is false.
//!
//! Changes to messages the client already holds (edits, unsends,
//! reactions, its user's hides) follow a second cursor, the conversation's
//! change counter: with `afterChange`, a conversation also lists the
//! messages up to `afterSeq` that changed since (in their current state)
//! and the ids hidden since, at most `limit` together (`hasMoreChanges`).
//! New messages come in their current state and are not repeated among the
//! changes, so a device sees each final state once.

use duet_common::error::ErrorCode;
use duet_common::ids::{ConversationId, MessageId, UserId};
use std::collections::HashSet;

use duet_common::domain::Message;
use duet_common::protocol::{DEFAULT_SYNC_LIMIT, MAX_SYNC_CONVERSATIONS, MAX_SYNC_LIMIT, SyncConversation, SyncIn, SyncResult};
use duet_common::{ApiError, AppContext};

use crate::store;

/// Rough size of one result: past it, conversations stop early with `hasMore`.
pub const RESULT_BYTES: usize = 1024 * 1024;

/// The result, and per conversation the seq the client then holds everything up to
/// (only for conversations fully caught up).
pub async fn sync(
    ctx: &AppContext,
    user_id: UserId,
    request: SyncIn,
    reference: Option<String>,
) -> Result<(SyncResult, Vec<(ConversationId, i64)>), ApiError> {
    let limit = request.limit.unwrap_or(DEFAULT_SYNC_LIMIT);
    if limit == 0 || limit > MAX_SYNC_LIMIT {
        return Err(ApiError::new(ErrorCode::InvalidLimit, format!("`limit` must be 1 to {MAX_SYNC_LIMIT}")));
    }
    let (rows, cursors, more_conversations) = match request.conversations {
        Some(list) => {
            if list.len() > MAX_SYNC_CONVERSATIONS {
                return Err(ApiError::new(
                    ErrorCode::TooManyConversations,
                    format!("at most {MAX_SYNC_CONVERSATIONS} conversations per sync"),
                ));
            }
            if list.iter().any(|c| c.after_seq < 0) {
                return Err(ApiError::new(ErrorCode::InvalidSeq, "`afterSeq` must not be negative"));
            }
            if list.iter().any(|c| c.after_change.is_some_and(|a| a < 0)) {
                return Err(ApiError::new(ErrorCode::InvalidSeq, "`afterChange` must not be negative"));
            }
            let ids: Vec<ConversationId> = list.iter().map(|c| c.conversation_id).collect::<HashSet<_>>().into_iter().collect();
            if ids.len() != list.len() {
                return Err(ApiError::new(ErrorCode::DuplicateConversation, "each conversation may be listed once"));
            }
            let rows = store::sync_rows(&ctx.db, user_id, &ids).await?;
            if rows.len() != ids.len() {
                return Err(ApiError::conversation_not_found());
            }
            let cursors = list.iter().map(|c| (c.conversation_id, c.after_seq, c.after_change)).collect::<Vec<_>>();
            (rows, cursors, false)
        }
        None => {
            let mut rows = store::pending_rows(&ctx.db, user_id, MAX_SYNC_CONVERSATIONS as i64 + 1).await?;
            let more = rows.len() > MAX_SYNC_CONVERSATIONS;
            rows.truncate(MAX_SYNC_CONVERSATIONS);
            let cursors = rows.iter().map(|r| (r.conversation_id, r.last_delivered_seq, None)).collect();
            (rows, cursors, more)
        }
    };
    let mut conversations = Vec::with_capacity(rows.len());
    let mut up_to = Vec::new();
    let mut budget = RESULT_BYTES;
    for (conversation_id, after_seq, after_change) in cursors {
        let row = rows.iter().find(|r| r.conversation_id == conversation_id).expect("a row per cursor");
        let changes = match after_change {
            Some(after_change) => Some(changes_since(ctx, user_id, conversation_id, after_seq, after_change, limit).await?),
            None => None,
        };
        let mut messages = store::visible_after(&ctx.db, user_id, conversation_id, after_seq, i64::from(limit) + 1).await?;
        let mut has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        // Each conversation gets at least one message, so paging always progresses.
        if let Some(fit) = fitting(&messages, &mut budget) {
            has_more = true;
            messages.truncate(fit);
        }
        if !has_more {
            // Everything stored up to the conversation's last seq at read time is in hand.
            let newest = messages.last().map_or(after_seq.min(row.last_seq), |m| m.seq);
            up_to.push((conversation_id, newest));
        }
        let (changes, hidden, has_more_changes, last_change) = match changes {
            Some(found) => (Some(found.messages), Some(found.hidden), found.up_to.is_some(), found.up_to.unwrap_or(row.last_change)),
            None => (None, None, false, row.last_change),
        };
        conversations.push(SyncConversation {
            conversation_id,
            messages,
            has_more,
            last_change,
            changes,
            hidden,
            has_more_changes,
            peer_last_delivered_seq: row.peer_last_delivered_seq,
            peer_last_read_seq: row.peer_last_read_seq,
            unread_count: store::unread_count(&ctx.db, user_id, conversation_id).await?,
        });
    }
    Ok((SyncResult { reference, conversations, more_conversations }, up_to))
}

/// A conversation's changes after a change cursor, at most `limit` together.
struct Changes {
    messages: Vec<Message>,
    hidden: Vec<MessageId>,
    /// When more changes follow: the position of the last one returned.
    up_to: Option<i64>,
}

/// The changed messages up to `after_seq` and the hidden ids after
/// `after_change`, merged in change order and cut at `limit`.
async fn changes_since(
    ctx: &AppContext,
    user_id: UserId,
    conversation_id: ConversationId,
    after_seq: i64,
    after_change: i64,
    limit: u32,
) -> Result<Changes, ApiError> {
    let fetch = i64::from(limit) + 1;
    let changed = store::changed_since(&ctx.db, user_id, conversation_id, after_seq, after_change, fetch).await?;
    let hidden = store::hidden_since(&ctx.db, user_id, conversation_id, after_change, fetch).await?;
    let mut positions: Vec<i64> = changed.iter().filter_map(|m| m.change_seq).chain(hidden.iter().map(|(_, c)| *c)).collect();
    positions.sort_unstable();
    let up_to = (positions.len() > limit as usize).then(|| positions[limit as usize - 1]);
    let keep = |position: i64| up_to.is_none_or(|last| position <= last);
    Ok(Changes {
        messages: changed.into_iter().filter(|m| m.change_seq.is_some_and(keep)).collect(),
        hidden: hidden.into_iter().filter(|(_, c)| keep(*c)).map(|(id, _)| id).collect(),
        up_to,
    })
}

/// How many of `messages` fit in what is left of `budget` (at least one), if not all.
fn fitting(messages: &[duet_common::domain::Message], budget: &mut usize) -> Option<usize> {
    for (i, m) in messages.iter().enumerate() {
        let size = 300 + m.text.as_ref().map_or(0, String::len) + m.payload.as_ref().map_or(0, |p| p.to_string().len());
        if size > *budget && i > 0 {
            *budget = 0;
            return Some(i);
        }
        *budget = budget.saturating_sub(size);
    }
    None
}
