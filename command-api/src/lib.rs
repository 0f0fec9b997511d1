//! The command side: everything that changes state goes through here.
//!
//! Messages and receipts are validated, appended in a transaction together
//! with their outbox events, and only then acknowledged and published live.
//! The realtime gateway calls [`Commands`] in-process, so a WebSocket send
//! and a REST send take exactly the same path.

pub mod accounts;
pub mod api;
pub mod appender;
pub mod attachments;
pub mod batcher;
pub mod conversations;
pub mod devices;
pub mod guard;
pub mod privacy;
pub mod receipts;
pub mod reports;
pub mod sessions;

use duet_common::domain::NewMessage;
use duet_common::ids::{ConversationId, UserId};
use duet_common::ratelimit::{Decision, RateLimiter};
use duet_common::{ApiError, AppContext};

use crate::batcher::{BatchFamilies, Outcome};

pub use appender::{AppendRequest, Appended, Appender};
pub use conversations::Conversation;
pub use receipts::{Markers, Receipt, ReceiptRequest, ReceiptWriter};

/// Where a message goes: a known conversation, or the conversation with a user.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Conversation(ConversationId),
    Peer(UserId),
}

/// The command handlers, shared by REST and the WebSocket gateway.
#[derive(Clone)]
pub struct Commands {
    pub ctx: AppContext,
    appender: Appender,
    receipts: ReceiptWriter,
    send_limiter: RateLimiter,
    /// Reports per user, across nodes.
    report_limiter: RateLimiter,
    /// Login and registration limits.
    pub guard: guard::Guard,
    /// Uploads to object storage, and the check of attachment messages.
    pub attachments: attachments::Attachments,
}

impl Commands {
    /// Starts the append writers of this process.
    pub fn start(ctx: &AppContext) -> anyhow::Result<Self> {
        let settings = &ctx.settings;
        let batches = BatchFamilies::register(&ctx.metrics);
        Ok(Commands {
            attachments: attachments::Attachments::new(ctx)?,
            appender: Appender::start(ctx, &batches),
            receipts: ReceiptWriter::start(ctx, &batches),
            send_limiter: RateLimiter::new(settings.rate_limit_per_sec, settings.rate_limit_burst),
            report_limiter: RateLimiter::new(settings.report_rate_per_sec, settings.report_burst),
            guard: guard::Guard::new(settings),
            ctx: ctx.clone(),
        })
    }

    /// Validates, rate-limits, stores and publishes a message. Returns once it
    /// is durable and on its way live (already queued to this node's sessions).
    /// An attachment message's attachment is checked first (one indexed read;
    /// other messages pay nothing): `attachments::message`.
    pub async fn send(&self, sender_id: UserId, target: Target, message: NewMessage) -> Result<Appended, ApiError> {
        let message = message.validate()?;
        let key = self.ctx.keys.send_rate(sender_id);
        if let Decision::Limited { retry_after_ms } = self.send_limiter.check(&self.ctx.fast_redis, &key).await {
            return Err(ApiError::RateLimited { retry_after_ms });
        }
        let conversation_id = match target {
            Target::Conversation(id) => id,
            Target::Peer(peer_id) => self.conversation_with(sender_id, peer_id).await?.0.id,
        };
        let message = self.attachments.attach(sender_id, conversation_id, message).await?;
        self.appender.append(AppendRequest { sender_id, conversation_id, message }).await
    }

    /// Records a delivered or read receipt; the other party (and the user's
    /// other devices) are told when a marker moved.
    pub async fn receipt(&self, user_id: UserId, conversation_id: ConversationId, seq: i64, receipt: Receipt) -> Result<Markers, ApiError> {
        self.receipts.record(ReceiptRequest { user_id, conversation_id, seq, receipt }).await
    }

    /// Queues a receipt and returns its outcome to come, for callers that go
    /// on meanwhile (the WebSocket gateway: receipts have no answer but errors).
    pub async fn queue_receipt(
        &self,
        user_id: UserId,
        conversation_id: ConversationId,
        seq: i64,
        receipt: Receipt,
    ) -> Result<Outcome<Markers>, ApiError> {
        self.receipts.queue(ReceiptRequest { user_id, conversation_id, seq, receipt }).await
    }

    /// The conversation with `peer_id`, created if missing.
    pub async fn conversation_with(&self, user_id: UserId, peer_id: UserId) -> Result<(Conversation, bool), ApiError> {
        let (conversation, created) = conversations::get_or_create(&self.ctx.db, user_id, peer_id).await?;
        if created {
            self.ctx.outbox_written.notify_one();
        }
        Ok((conversation, created))
    }
}
