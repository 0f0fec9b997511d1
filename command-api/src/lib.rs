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
pub mod changes;
pub mod conversations;
pub mod devices;
pub mod guard;
pub mod privacy;
pub mod reactions;
pub mod receipts;
pub mod reports;
pub mod sessions;

use duet_common::domain::NewMessage;
use duet_common::ids::{ConversationId, MessageId, SessionId, UserId};
use duet_common::protocol::{MessageHiddenData, MessageUpdated, ServerEvent};
use duet_common::ratelimit::{Decision, RateLimiter};
use duet_common::{ApiError, AppContext};

use crate::batcher::{BatchFamilies, Outcome};

pub use appender::{AppendRequest, Appended, Appender};
pub use changes::{Changed, EditRequest};
pub use conversations::Conversation;
pub use reactions::Hidden;
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
        self.limit_sends(sender_id).await?;
        let conversation_id = match target {
            Target::Conversation(id) => id,
            Target::Peer(peer_id) => self.conversation_with(sender_id, peer_id).await?.0.id,
        };
        let message = self.attachments.attach(sender_id, conversation_id, message).await?;
        self.appender.append(AppendRequest { sender_id, conversation_id, message }).await
    }

    /// Takes a token from the user's message limit (sends and message changes, across nodes), or refuses (429).
    async fn limit_sends(&self, user_id: UserId) -> Result<(), ApiError> {
        let key = self.ctx.keys.send_rate(user_id);
        match self.send_limiter.check(&self.ctx.fast_redis, &key).await {
            Decision::Limited { retry_after_ms } => Err(ApiError::RateLimited { retry_after_ms }),
            Decision::Allowed | Decision::AllowedLocally => Ok(()),
        }
    }

    /// Edits the caller's own message (`changes::edit`) and tells both
    /// members' sessions; `origin` is the WebSocket session that asked (it
    /// answers itself, so the fan-out skips it).
    pub async fn edit(&self, user_id: UserId, origin: Option<SessionId>, request: EditRequest) -> Result<Changed, ApiError> {
        // Refused input takes no token (as with sends).
        duet_common::reactions::validate_client_edit_id(&request.client_edit_id)?;
        duet_common::domain::validate_text(&request.text)?;
        self.limit_sends(user_id).await?;
        let changed = changes::edit(&self.ctx.db, self.ctx.settings.edit_window_secs, user_id, request).await?;
        self.announce(origin, &changed).await;
        Ok(changed)
    }

    /// Unsends the caller's own message (`changes::unsend`) and tells both members' sessions.
    pub async fn unsend(
        &self,
        user_id: UserId,
        origin: Option<SessionId>,
        conversation_id: ConversationId,
        message_id: MessageId,
    ) -> Result<Changed, ApiError> {
        self.limit_sends(user_id).await?;
        let attachment = self.attachments.of_message(conversation_id, message_id).await?;
        let changed = changes::unsend(&self.ctx.db, self.ctx.settings.edit_window_secs, user_id, conversation_id, message_id).await?;
        self.announce(origin, &changed).await;
        // The object goes with the content (only the sender gets this far).
        if let Some(id) = attachment {
            self.attachments.forget_unsent(conversation_id, id).await;
        }
        Ok(changed)
    }

    /// Sets or removes the caller's reaction (`reactions::react`) and tells both members' sessions.
    pub async fn react(
        &self,
        user_id: UserId,
        origin: Option<SessionId>,
        conversation_id: ConversationId,
        message_id: MessageId,
        emoji: Option<&str>,
    ) -> Result<Changed, ApiError> {
        // Checked before the rate limit: a refused emoji costs no token.
        let emoji = emoji.map(duet_common::reactions::validate_emoji).transpose()?;
        self.limit_sends(user_id).await?;
        let changed = reactions::react(&self.ctx.db, user_id, conversation_id, message_id, emoji).await?;
        self.announce(origin, &changed).await;
        Ok(changed)
    }

    /// Hides a message from the caller (`reactions::hide`) and tells the caller's other sessions.
    pub async fn hide(
        &self,
        user_id: UserId,
        origin: Option<SessionId>,
        conversation_id: ConversationId,
        message_id: MessageId,
    ) -> Result<Hidden, ApiError> {
        self.limit_sends(user_id).await?;
        let (hidden, fresh) = reactions::hide(&self.ctx.db, user_id, conversation_id, message_id).await?;
        if fresh {
            self.ctx.outbox_written.notify_one();
        }
        let frame =
            ServerEvent::MessageHidden(MessageHiddenData { reference: None, conversation_id, message_id, change_seq: hidden.change_seq })
                .encode();
        self.ctx.live.publish(vec![self.ctx.live.change(vec![user_id], origin, &frame)]).await;
        Ok(hidden)
    }

    /// Publishes a change to both members' sessions but `origin`. A retry
    /// is published again: the first attempt may have died before its publish.
    async fn announce(&self, origin: Option<SessionId>, changed: &Changed) {
        if changed.fresh {
            self.ctx.outbox_written.notify_one();
        }
        let message = &changed.message;
        let users = vec![message.sender_id, message.receiver_id];
        let frame =
            ServerEvent::MessageUpdated(MessageUpdated { reference: None, change: changed.change, message: message.clone() }).encode();
        self.ctx.live.publish(vec![self.ctx.live.change(users, origin, &frame)]).await;
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
