//! A session's writer task: the only code that writes to the socket.
//!
//! It keeps, per conversation, the last seq this session has pushed (or
//! that the client holds after a sync), so message frames go out in seq
//! order, each at most once per session (the bookkeeping is [`crate::order`]):
//! - a seq at or below it is a duplicate and is skipped;
//! - a gap (seq beyond it + 1) is first given a short window to close by
//!   itself (Pub/Sub may deliver a conversation's messages out of order, as
//!   they leave through different pooled connections); what is still
//!   missing then is read from PostgreSQL, and the held messages follow;
//! - an unknown conversation starts from the user's delivered marker.
//!
//! It also expires a peer's `chat.typing start` that was never refreshed.

use duet_common::ids::{ConversationId, UserId};
use std::sync::Arc;
use std::time::Duration;

use duet_common::domain::Message;
use duet_common::protocol::{ServerEvent, TypingOut, TypingState, message_frame};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use poem::web::websocket::{CloseCode, Message as WsMessage, WebSocketStream};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::GatewayMetrics;
use crate::order::{Order, Step, close_gaps};
use crate::session::{LiveMessage, Outbound, Session};
use crate::store;

pub type Sink = SplitSink<WebSocketStream, WsMessage>;

/// Messages read from PostgreSQL per query while filling a gap.
const FILL_PAGE: i64 = 200;
/// Largest gap filled live; beyond it the client sees the jump in seq and syncs.
const FILL_MAX: i64 = 2_000;
/// How long a message after a gap waits for the missing ones to arrive live.
const REORDER_WINDOW: Duration = Duration::from_millis(50);
/// How long a close frame may wait for a client that is not reading (behind
/// what is already in its socket); then the connection is dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SessionWriter {
    sink: Sink,
    queue: mpsc::Receiver<Outbound>,
    session: Arc<Session>,
    db: PgPool,
    typing_ttl: Duration,
    metrics: GatewayMetrics,
    /// Last seq the client holds per conversation, and live messages held
    /// behind a gap.
    order: Order<Arc<LiveMessage>>,
    /// A peer's `start` per (conversation, user), and when it lapses.
    typing: Vec<(ConversationId, UserId, Instant)>,
}

/// Why the writer stopped writing.
enum Stop {
    /// The socket is gone.
    Gone,
    /// Close with this code.
    Close(u16, &'static str),
}

impl SessionWriter {
    pub fn new(
        sink: Sink,
        queue: mpsc::Receiver<Outbound>,
        session: Arc<Session>,
        db: PgPool,
        typing_ttl: Duration,
        metrics: GatewayMetrics,
    ) -> Self {
        SessionWriter { sink, queue, session, db, typing_ttl, metrics, order: Order::default(), typing: Vec::new() }
    }

    /// Writes until the session closes; returns the close code sent (if any).
    pub async fn run(mut self) -> Option<u16> {
        let stop = loop {
            let next_expiry = self.typing.iter().map(|t| t.2).chain(self.order.next_deadline()).min();
            let step = tokio::select! {
                biased;
                code = self.session.kicked() => Err(stop_for(code)),
                item = self.queue.recv() => match item {
                    // Boxed: an idle session keeps no room for a gap fill's state.
                    Some(item) => Box::pin(self.handle(item)).await,
                    None => Err(Stop::Gone),
                },
                _ = sleep_until(next_expiry), if next_expiry.is_some() => Box::pin(self.expire()).await,
            };
            if let Err(stop) = step {
                break stop;
            }
        };
        match stop {
            Stop::Gone => None,
            Stop::Close(code, reason) => {
                // Counted when decided: the close may wait for the client to read.
                self.metrics.closed(code);
                let close = WsMessage::close_with(CloseCode::from(code), reason);
                let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.sink.send(close)).await;
                Some(code)
            }
        }
    }

    async fn handle(&mut self, item: Outbound) -> Result<(), Stop> {
        match item {
            Outbound::Frame(text) => self.write(text).await,
            Outbound::Shared(text) => self.write(text.to_string()).await,
            Outbound::Message(message) => self.message(&message).await,
            Outbound::Typing { conversation_id, user_id, state, frame } => {
                self.typing.retain(|t| !(t.0 == conversation_id && t.1 == user_id));
                if state == TypingState::Start {
                    self.typing.push((conversation_id, user_id, Instant::now() + self.typing_ttl));
                }
                self.write(frame.to_string()).await
            }
            Outbound::Synced { frame, up_to } => {
                self.write(frame).await?;
                for (conversation_id, seq) in up_to {
                    self.order.advance(conversation_id, seq);
                    self.release(conversation_id).await?;
                }
                Ok(())
            }
            Outbound::Resync => self.resync().await,
            Outbound::Close(code, reason) => Err(Stop::Close(code, reason)),
        }
    }

    /// Pushes a live message in order: duplicates skipped, a message after a gap held.
    async fn message(&mut self, message: &Arc<LiveMessage>) -> Result<(), Stop> {
        let conversation_id = message.conversation_id;
        self.baseline(conversation_id, message.seq).await;
        let Some(message) = self.order.offer(conversation_id, message.seq, message.clone(), Instant::now(), REORDER_WINDOW) else {
            return Ok(());
        };
        self.push_live(&message).await?;
        self.release(conversation_id).await
    }

    /// Whether the message is this session's own send, still unanswered by
    /// its live copy: the device that sent it has its ack and gets no copy.
    /// Asked only when the message goes out (live, held or read from the
    /// store), never when it is held: a held message's stored copy may go
    /// out first (a resync's fill), and must find the mark unspent.
    fn own(&self, sender_id: UserId, client_msg_id: &str) -> bool {
        sender_id == self.session.user_id && self.session.forget_send(client_msg_id)
    }

    async fn push_live(&mut self, message: &LiveMessage) -> Result<(), Stop> {
        self.typing.retain(|t| !(t.0 == message.conversation_id && t.1 == message.sender_id));
        if !self.own(message.sender_id, &message.client_msg_id) {
            self.write(message.frame.to_string()).await?;
            self.metrics.pushed.inc();
        }
        self.order.advance(message.conversation_id, message.seq);
        Ok(())
    }

    /// Pushes held messages of the conversation that are next in line; drops those already pushed.
    async fn release(&mut self, conversation_id: ConversationId) -> Result<(), Stop> {
        while let Some(message) = self.order.next_held(conversation_id) {
            self.push_live(&message).await?;
        }
        Ok(())
    }

    /// Gaps whose window passed: what is still missing is read from PostgreSQL, then the held messages follow.
    async fn expire_held(&mut self) -> Result<(), Stop> {
        for (conversation_id, held) in self.order.due(Instant::now()) {
            let Some(first) = held.keys().next().copied() else { continue };
            let last = self.baseline(conversation_id, first).await;
            for step in close_gaps(last, held) {
                match step {
                    Step::Fill { after, before } => self.fill(conversation_id, after, before).await?,
                    Step::Push(message) => self.push_live(&message).await?,
                }
            }
        }
        Ok(())
    }

    /// The seq the client holds in the conversation; for a conversation not seen
    /// yet, the user's delivered marker (or, if unreadable, just below `seq`).
    async fn baseline(&mut self, conversation_id: ConversationId, seq: i64) -> i64 {
        if let Some(last) = self.order.last(conversation_id) {
            return last;
        }
        // Without the marker, push what comes; the client's sync covers the rest.
        let last = match store::delivered_marker(&self.db, self.session.user_id, conversation_id).await {
            Ok(marker) => marker,
            Err(e) => {
                tracing::warn!(error = %e, %conversation_id, "could not read the delivered marker; pushing live messages as they come");
                seq - 1
            }
        };
        self.order.set_last(conversation_id, last);
        last
    }

    /// Pushes stored messages with `after < seq < before`, in pages.
    async fn fill(&mut self, conversation_id: ConversationId, after: i64, before: i64) -> Result<(), Stop> {
        let mut after = after.max(before - 1 - FILL_MAX);
        while after + 1 < before {
            let page = match store::messages_between(&self.db, conversation_id, after, before, FILL_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, %conversation_id, after, before, "could not fill a gap from PostgreSQL; the client's sync will");
                    return Ok(());
                }
            };
            if page.is_empty() {
                break;
            }
            for message in &page {
                self.push_stored(message).await?;
                after = message.seq;
            }
        }
        Ok(())
    }

    async fn push_stored(&mut self, message: &Message) -> Result<(), Stop> {
        // This session's own send, still in flight: its ack is on the way.
        if !self.own(message.sender_id, &message.client_msg_id) {
            self.write(message_frame(message)).await?;
            self.metrics.filled.inc();
        }
        self.order.advance(message.conversation_id, message.seq);
        Ok(())
    }

    /// After possible loss of live events: pushes whatever the client lacks, in every conversation.
    async fn resync(&mut self) -> Result<(), Stop> {
        let positions = match store::positions(&self.db, self.session.user_id).await {
            Ok(positions) => positions,
            Err(e) => {
                tracing::warn!(error = %e, "could not read positions to resync; the client's sync will");
                return Ok(());
            }
        };
        for (conversation_id, last_seq, marker) in positions {
            let holds = self.order.last(conversation_id).unwrap_or(marker);
            if last_seq > holds {
                self.order.set_last(conversation_id, holds);
                self.fill(conversation_id, holds, last_seq + 1).await?;
                self.release(conversation_id).await?;
            }
        }
        Ok(())
    }

    async fn expire(&mut self) -> Result<(), Stop> {
        self.expire_held().await?;
        self.expire_typing().await
    }

    async fn expire_typing(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        let (expired, kept): (Vec<_>, Vec<_>) = self.typing.drain(..).partition(|t| t.2 <= now);
        self.typing = kept;
        for (conversation_id, user_id, _) in expired {
            self.write(ServerEvent::Typing(TypingOut { conversation_id, user_id, state: TypingState::Stop }).encode()).await?;
        }
        Ok(())
    }

    /// Writes one frame; a kick interrupts a write blocked on a client that does not read.
    async fn write(&mut self, text: String) -> Result<(), Stop> {
        let session = self.session.clone();
        tokio::select! {
            biased;
            code = session.kicked() => Err(stop_for(code)),
            sent = self.sink.send(WsMessage::Text(text)) => sent.map_err(|_| Stop::Gone),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn stop_for(code: u16) -> Stop {
    if code == crate::session::GONE { Stop::Gone } else { Stop::Close(code, reason_of(code)) }
}

fn reason_of(code: u16) -> &'static str {
    use crate::errors::close;
    match code {
        close::TRY_AGAIN => "client too slow; reconnect and sync",
        close::TOO_BIG => "frame too large",
        close::POLICY => "too many invalid frames",
        close::RESTART => "server restarting; reconnect and sync",
        close::TIMEOUT => "timed out",
        close::UNAUTHORIZED => "unauthorized",
        _ => "closing",
    }
}
