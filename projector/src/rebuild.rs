//! Recomputes every projection from PostgreSQL (`duet projector rebuild`,
//! and automatically when the projections are found cold).
//!
//! Order matters so that nothing is lost while live events keep flowing:
//! mark the projections cold (readers use PostgreSQL), delete them, and only
//! then read PostgreSQL. Any event applied before a key was deleted was
//! committed before the read, so the read includes it; events applied after
//! merge with the rebuilt state. A key first written while the scan ran may
//! escape the delete while its user's list does not; the rebuild's merge
//! ([`Op::Rebuilt`]) puts every entry back in its list. The rebuild writes
//! through the same merge operations as live events ([`crate::apply`]), so
//! it yields exactly the state the live projector reaches.

use duet_common::ids::{ConversationId, UserId};
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use duet_common::AppContext;
use duet_common::domain::Message;
use duet_common::message_columns;
use fred::prelude::*;
use fred::types::{Expiration, SetOptions};
use uuid::Uuid;

use crate::apply::{Marker, Merge, Op, apply_merges};

/// Member rows read per round trip.
const PAGE: i64 = 500;
/// The rebuild lock's lifetime, renewed after every page: a crashed rebuild
/// blocks the next one for at most this long.
const LOCK_SECS: i64 = 30;

#[derive(sqlx::FromRow)]
struct MemberRow {
    conversation_id: ConversationId,
    user_id: UserId,
    peer_id: UserId,
    my_delivered: i64,
    my_read: i64,
    peer_delivered: i64,
    peer_read: i64,
    created_at: DateTime<Utc>,
    last_seq: i64,
}

/// Outcome of a rebuild.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rebuilt {
    pub entries: u64,
}

/// Rebuilds unless another process is already at it (then returns `None`).
pub async fn rebuild(ctx: &AppContext) -> anyhow::Result<Option<Rebuilt>> {
    let lock = ctx.keys.rebuild_lock();
    let token = Uuid::new_v4().to_string();
    let taken: Option<String> = ctx
        .redis
        .next()
        .set(&lock, &token, Some(Expiration::EX(LOCK_SECS)), Some(SetOptions::NX), false)
        .await
        .context("Failed to take the rebuild lock")?;
    if taken.is_none() {
        return Ok(None);
    }
    let outcome = rebuild_locked(ctx).await;
    // Released only if still ours (it expires on its own after a crash).
    let current: Option<String> = ctx.redis.next().get(&lock).await.unwrap_or(None);
    if current.as_deref() == Some(token.as_str()) {
        let _: Result<i64, _> = ctx.redis.next().del(&lock).await;
    }
    outcome.map(Some)
}

async fn rebuild_locked(ctx: &AppContext) -> anyhow::Result<Rebuilt> {
    let started = std::time::Instant::now();
    let client = ctx.redis.next();
    let _: i64 = client.del(ctx.keys.projections_ready()).await?;
    let doomed = duet_common::redis::scan_all(client, ctx.keys.all_projections()).await?;
    duet_common::redis::delete_all(client, doomed).await?;
    let mut rebuilt = Rebuilt::default();
    let mut after = (ConversationId::default(), UserId::default());
    loop {
        let rows: Vec<MemberRow> = sqlx::query_as(
            "select m.conversation_id, m.user_id, m.peer_id, \
                    m.last_delivered_seq as my_delivered, m.last_read_seq as my_read, \
                    p.last_delivered_seq as peer_delivered, p.last_read_seq as peer_read, \
                    c.created_at, c.last_seq \
             from conversation_members m \
             join conversation_members p on p.conversation_id = m.conversation_id and p.user_id = m.peer_id \
             join conversations c on c.id = m.conversation_id \
             where (m.conversation_id, m.user_id) > ($1, $2) \
             order by m.conversation_id, m.user_id limit $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&ctx.db)
        .await
        .context("Failed to read conversation members")?;
        let Some(last) = rows.last() else { break };
        after = (last.conversation_id, last.user_id);
        rebuild_page(ctx, &rows).await?;
        rebuilt.entries += rows.len() as u64;
        let _: bool = client.expire(ctx.keys.rebuild_lock(), LOCK_SECS, None).await?;
    }
    let _: () = client.set(ctx.keys.projections_ready(), "1", None, None, false).await?;
    tracing::info!(entries = rebuilt.entries, elapsed_ms = started.elapsed().as_millis() as u64, "projections rebuilt");
    Ok(rebuilt)
}

async fn rebuild_page(ctx: &AppContext, rows: &[MemberRow]) -> anyhow::Result<()> {
    let with_messages: Vec<&MemberRow> = rows.iter().filter(|r| r.last_seq > 0).collect();
    let last: HashMap<ConversationId, Message> = sqlx::query_as::<_, Message>(concat!(
        "select ",
        message_columns!(),
        " from messages where (conversation_id, seq) in (select * from unnest($1::uuid[], $2::int8[]))"
    ))
    .bind(with_messages.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
    .bind(with_messages.iter().map(|r| r.last_seq).collect::<Vec<_>>())
    .fetch_all(&ctx.db)
    .await
    .context("Failed to read last messages")?
    .into_iter()
    .map(|m| (m.conversation_id, m))
    .collect();
    let mut unread: HashMap<(ConversationId, UserId), Vec<i64>> = HashMap::new();
    let seqs: Vec<(ConversationId, UserId, i64)> = sqlx::query_as(
        "select u.conversation_id, u.user_id, u.seq from unread_messages u \
         join unnest($1::uuid[], $2::uuid[]) as k(conversation_id, user_id) \
           on u.conversation_id = k.conversation_id and u.user_id = k.user_id",
    )
    .bind(rows.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
    .fetch_all(&ctx.db)
    .await
    .context("Failed to read unread messages")?;
    for (conversation, user, seq) in seqs {
        unread.entry((conversation, user)).or_default().push(seq);
    }
    let merges: Vec<Merge> = rows
        .iter()
        .flat_map(|row| {
            let message = last.get(&row.conversation_id).cloned();
            let seqs = unread.remove(&(row.conversation_id, row.user_id)).unwrap_or_default();
            entry_merges(row, message, seqs)
        })
        .collect();
    // A page at a time: one script entry per member, in a few calls.
    apply_merges(ctx, &merges).await
}

/// What one member's entry is made of, as merges.
fn entry_merges(row: &MemberRow, last: Option<Message>, unread: Vec<i64>) -> Vec<Merge> {
    let mut ops = vec![
        Op::Created { at_micros: row.created_at.timestamp_micros() },
        Op::Marker { field: Marker::MyDelivered, seq: row.my_delivered },
        Op::Marker { field: Marker::MyRead, seq: row.my_read },
        Op::Marker { field: Marker::PeerDelivered, seq: row.peer_delivered },
        Op::Marker { field: Marker::PeerRead, seq: row.peer_read },
    ];
    // The preview only: the unread set is the one `unread_messages` gives
    // (`Op::Rebuilt`), which leaves out an unsent or hidden last message.
    if let Some(message) = last {
        ops.push(Op::Message { message, to_user: false });
    }
    ops.push(Op::Rebuilt { unread });
    let (user, peer, conversation) = (row.user_id, row.peer_id, row.conversation_id);
    ops.into_iter().map(|op| Merge { user, peer, conversation, op }).collect()
}
