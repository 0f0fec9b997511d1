//! The command side's hook into the jobs: enqueue a push when a message
//! reaches an offline user, and a silent badge update when a user reads.
//!
//! On the send path this costs one Redis round trip (presence, overlapped
//! with the live publish) and, for an offline receiver, one small
//! transaction: the collapse row and the job commit together, so a collapse
//! row always has its job. While that row exists, further messages in the
//! conversation collapse into the same notification (an insert that does
//! nothing).

use std::time::Duration;

use duet_command_api::hooks::{CommandHooks, HookFuture};
use duet_common::domain::Message;
use duet_common::{AppContext, presence};
use uuid::Uuid;

use crate::metrics::JobMetrics;
use crate::push::PushJob;
use crate::queue;

pub struct Enqueuer {
    ctx: AppContext,
    metrics: JobMetrics,
}

impl Enqueuer {
    pub fn new(ctx: &AppContext, metrics: JobMetrics) -> Self {
        Enqueuer { ctx: ctx.clone(), metrics }
    }

    /// Enqueues an alert for `user_id` unless one is outstanding for the
    /// conversation or the user has no device. Returns whether it did.
    pub async fn alert(&self, user_id: Uuid, conversation_id: Uuid) -> anyhow::Result<bool> {
        // The common case on a busy conversation (already collapsed) or for a
        // user without devices costs one read, not a transaction.
        let wanted: bool = sqlx::query_scalar(
            "select exists (select 1 from device_tokens where user_id = $1) \
               and not exists (select 1 from push_collapse where user_id = $1 and conversation_id = $2)",
        )
        .bind(user_id)
        .bind(conversation_id)
        .fetch_one(&self.ctx.db)
        .await?;
        if !wanted {
            return Ok(false);
        }
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
        JobMetrics::inc(&self.metrics.enqueued, "push");
        Ok(true)
    }

    /// After a read, enqueues a badge update for the user's devices. (The
    /// moved marker has already ended any outstanding notification of the
    /// conversation: a trigger does that in the receipt's transaction,
    /// migrations/0006.)
    pub async fn read(&self, user_id: Uuid, conversation_id: Uuid) -> anyhow::Result<()> {
        let mut conn = self.ctx.db.acquire().await?;
        let has_devices: bool = sqlx::query_scalar("select exists (select 1 from device_tokens where user_id = $1)")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await?;
        if has_devices {
            queue::push(&mut conn, queue::PUSH_QUEUE, &PushJob::Badge { user_id, conversation_id, attempt: 1 }, Duration::ZERO, 1).await?;
            JobMetrics::inc(&self.metrics.enqueued, "badge");
        }
        Ok(())
    }
}

impl CommandHooks for Enqueuer {
    fn message_stored<'a>(&'a self, message: &'a Message) -> HookFuture<'a> {
        Box::pin(async move {
            let receiver = message.receiver_id;
            // Unknown presence (Redis down) enqueues: the job checks again.
            if presence::online(&self.ctx.redis, &self.ctx.keys, &[receiver]).await.is_some_and(|o| o[0]) {
                JobMetrics::inc(&self.metrics.skipped, "push");
                return;
            }
            match self.alert(receiver, message.conversation_id).await {
                Ok(true) => {}
                Ok(false) => JobMetrics::inc(&self.metrics.skipped, "push"),
                Err(e) => tracing::error!(error = %format!("{e:#}"), message = %message.id, "could not enqueue a push"),
            }
        })
    }

    fn marker_moved<'a>(&'a self, user_id: Uuid, conversation_id: Uuid, read: bool) -> HookFuture<'a> {
        Box::pin(async move {
            if !read {
                return;
            }
            if let Err(e) = self.read(user_id, conversation_id).await {
                tracing::error!(error = %format!("{e:#}"), %user_id, "could not enqueue a badge update");
            }
        })
    }
}
