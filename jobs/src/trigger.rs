//! Push triggers: the `push` consumer group on the event stream turns
//! events into jobs. A message to an offline user enqueues an alert; a read
//! enqueues a silent badge update for the reader's devices.
//!
//! Off the send path, and from the durable outbox: a crash between a commit
//! and the decision re-delivers the events (the group keeps them pending)
//! instead of losing the push. Handling an event twice is harmless: an
//! alert is only enqueued together with its collapse row, and a badge update
//! sends an absolute count.
//!
//! A batch costs one Redis round trip (presence of every receiver) and one
//! read; only receivers that get a new notification cost a transaction each
//! (the collapse row and the job commit together, so a collapse row always
//! has its job). While that row exists, further messages in the conversation
//! collapse into the same notification.

use duet_common::ids::{ConversationId, UserId};
use std::collections::BTreeMap;
use std::time::Duration;

use duet_common::events::{DomainEvent, Envelope};
use duet_common::stream::{Entry, EventHandler};
use duet_common::{AppContext, presence};
use uuid::Uuid;

use crate::metrics::JobMetrics;
use crate::push::PushJob;
use crate::queue;

/// The consumer group of the push triggers.
pub const GROUP: &str = "push";

pub struct Triggers {
    ctx: AppContext,
    metrics: JobMetrics,
}

impl EventHandler for Triggers {
    async fn handle(&self, entries: &[Entry]) -> anyhow::Result<()> {
        // The newest seq per (receiver, conversation), and the readers.
        let mut messages = 0u64;
        let mut received: BTreeMap<(UserId, ConversationId), i64> = BTreeMap::new();
        let mut reads: Vec<(UserId, ConversationId)> = Vec::new();
        for entry in entries {
            // Undecodable entries are the projector's to report.
            let Some(Ok(Envelope { event, .. })) = entry.event.as_deref().map(serde_json::from_str::<Envelope>) else {
                continue;
            };
            match event {
                DomainEvent::MessageAppended { message } => {
                    messages += 1;
                    let seq = received.entry((message.receiver_id, message.conversation_id)).or_default();
                    *seq = (*seq).max(message.seq);
                }
                DomainEvent::ReadUpTo { user_id, conversation_id, .. } => reads.push((user_id, conversation_id)),
                // Changes to sent messages send no push: the members' devices learn them live or on sync.
                DomainEvent::ConversationCreated { .. }
                | DomainEvent::DeliveredUpTo { .. }
                | DomainEvent::MessageEdited { .. }
                | DomainEvent::MessageDeleted { .. }
                | DomainEvent::MessageHidden { .. }
                | DomainEvent::ReactionChanged { .. } => {}
            }
        }
        let alerts = self.alert(received).await?;
        JobMetrics::inc_by(&self.metrics.enqueued, "push", alerts);
        JobMetrics::inc_by(&self.metrics.skipped, "push", messages - alerts);
        reads.sort_unstable();
        reads.dedup();
        self.badge(reads).await
    }
}

impl Triggers {
    pub fn new(ctx: &AppContext, metrics: JobMetrics) -> Self {
        Triggers { ctx: ctx.clone(), metrics }
    }

    /// Enqueues an alert for each receiver that is offline, has a device,
    /// has not yet received the message, and has no notification of the
    /// conversation outstanding. Returns how many it enqueued.
    async fn alert(&self, received: BTreeMap<(UserId, ConversationId), i64>) -> anyhow::Result<u64> {
        let receivers: Vec<UserId> = received.keys().map(|(user, _)| *user).collect();
        // Unknown presence (Redis down) counts as offline: the job checks again.
        let online = presence::online(&self.ctx.fast_redis, &self.ctx.keys, &receivers).await.unwrap_or_default();
        let (mut users, mut conversations, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for (i, ((user, conversation), seq)) in received.into_iter().enumerate() {
            if !online.get(i).copied().unwrap_or(false) {
                users.push(user);
                conversations.push(conversation);
                seqs.push(seq);
            }
        }
        if users.is_empty() {
            return Ok(0);
        }
        // The common cases (a busy conversation already collapsed, a user
        // without devices, a message the device already has) cost this read
        // and nothing more.
        let wanted: Vec<(UserId, ConversationId)> = sqlx::query_as(
            "select t.user_id, t.conversation_id \
             from unnest($1::uuid[], $2::uuid[], $3::bigint[]) as t (user_id, conversation_id, seq) \
             join conversation_members m on m.conversation_id = t.conversation_id and m.user_id = t.user_id \
             where m.last_delivered_seq < t.seq \
               and exists (select 1 from device_tokens d where d.user_id = t.user_id) \
               and not exists (select 1 from push_collapse c where c.user_id = t.user_id and c.conversation_id = t.conversation_id)",
        )
        .bind(&users)
        .bind(&conversations)
        .bind(&seqs)
        .fetch_all(&self.ctx.db)
        .await?;
        let enqueued =
            futures_util::future::try_join_all(wanted.into_iter().map(|(user, conversation)| self.enqueue_alert(user, conversation)))
                .await?;
        Ok(enqueued.into_iter().filter(|&done| done).count() as u64)
    }

    /// The collapse row and the alert job, in one transaction; false if
    /// another notification got there first.
    async fn enqueue_alert(&self, user_id: UserId, conversation_id: ConversationId) -> anyhow::Result<bool> {
        let episode = Uuid::new_v4();
        let mut tx = self.ctx.db.begin().await?;
        let inserted = sqlx::query(
            "insert into push_collapse (user_id, conversation_id, episode) \
             select $1, $2, $3 where exists (select 1 from device_tokens where user_id = $1) \
             on conflict do nothing",
        )
        .bind(user_id)
        .bind(conversation_id)
        .bind(episode)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let job = PushJob::Alert { user_id, conversation_id, episode, attempt: 1 };
        queue::push(&mut tx, queue::PUSH_QUEUE, &job, Duration::ZERO, 1).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// After reads, a badge update for each reader with devices. (The moved
    /// marker has already ended any outstanding notification of the
    /// conversation: a trigger does that in the receipt's transaction,
    /// migrations/0006.)
    async fn badge(&self, reads: Vec<(UserId, ConversationId)>) -> anyhow::Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        let readers: Vec<UserId> = reads.iter().map(|(user, _)| *user).collect();
        let with_devices: Vec<UserId> = sqlx::query_scalar("select distinct user_id from device_tokens where user_id = any($1)")
            .bind(&readers)
            .fetch_all(&self.ctx.db)
            .await?;
        let mut conn = self.ctx.db.acquire().await?;
        for (user_id, conversation_id) in reads.into_iter().filter(|(user, _)| with_devices.contains(user)) {
            queue::push(&mut conn, queue::PUSH_QUEUE, &PushJob::Badge { user_id, conversation_id, attempt: 1 }, Duration::ZERO, 1).await?;
            JobMetrics::inc(&self.metrics.enqueued, "badge");
        }
        Ok(())
    }
}
