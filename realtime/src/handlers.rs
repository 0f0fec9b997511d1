//! What the reader does with each client frame of an authenticated session.
//!
//! Frames are handled one at a time, in arrival order: a client's sends are
//! appended in the order it sent them, and an in-flight send always finishes
//! (and its ack is queued) before a shutdown close. Receipts, which have no
//! answer, are queued in order and not waited for: the next frame is read
//! while they commit, and an error comes back when their batch is done.

use duet_common::error::ErrorCode;
use duet_common::ids::ConversationId;
use std::collections::HashSet;
use std::num::NonZeroU32;

use duet_command_api::{Receipt, Target};
use duet_common::domain::{MessageType, NewMessage};
use duet_common::protocol::{
    Ack, ClientEvent, MAX_FRAME_ID_CHARS, MAX_PRESENCE_USERS, ParseError, Pong, PresenceStatus, RawClientFrame, SendData, ServerEvent,
    TypingIn, TypingOut,
};
use duet_common::{ApiError, presence};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tracing::Instrument;

use crate::Gateway;
use crate::errors::{api_error_frame, close, error_frame};
use crate::session::{Outbound, Session};
use crate::{changes, store, sync};

/// A frame refused before it reached a handler.
#[derive(Debug)]
pub struct Refused {
    reference: Option<String>,
    code: ErrorCode,
    message: String,
}

impl Refused {
    pub fn frame(&self) -> String {
        error_frame(self.reference.as_deref(), self.code, self.message.clone())
    }
}

pub fn binary_refused() -> Refused {
    Refused { reference: None, code: ErrorCode::BinaryNotSupported, message: "frames must be JSON text".into() }
}

/// Reads the envelope and interprets `data` by type.
pub fn parse(text: &str) -> Result<(Option<String>, ClientEvent), Refused> {
    let refused = |reference: Option<String>, code, message: String| Refused { reference, code, message };
    let value: Value = serde_json::from_str(text).map_err(|e| refused(None, ErrorCode::InvalidJson, format!("not JSON: {e}")))?;
    // The id is read first, so every later refusal can name the frame.
    let reference = value.get("id").and_then(Value::as_str).map(str::to_owned);
    let envelope: RawClientFrame = serde_json::from_value(value).map_err(|e| {
        refused(
            reference.clone(),
            ErrorCode::InvalidFrame,
            format!("a frame is an object with a string `type`, optional string `id`, numeric `ts` and `data`: {e}"),
        )
    })?;
    if envelope.id.as_ref().is_some_and(|id| id.is_empty() || id.chars().count() > MAX_FRAME_ID_CHARS) {
        return Err(refused(None, ErrorCode::InvalidFrame, format!("`id` must be 1 to {MAX_FRAME_ID_CHARS} characters")));
    }
    let event = ClientEvent::parse(&envelope.kind, envelope.data).map_err(|e| match e {
        ParseError::UnknownType(kind) => refused(reference.clone(), ErrorCode::UnknownType, format!("unknown frame type `{kind}`")),
        ParseError::InvalidData { kind, cause } => {
            refused(reference.clone(), ErrorCode::InvalidData, format!("invalid `data` for `{kind}`: {cause}"))
        }
    })?;
    Ok((envelope.id, event))
}

/// Whether a read error is tungstenite refusing an oversized frame or message.
/// (poem hands these over as `io::Error`s carrying tungstenite's text.)
pub fn is_too_big(err: &std::io::Error) -> bool {
    err.to_string().starts_with("Space limit exceeded")
}

/// The close code for a read error that is the client breaking RFC 6455:
/// 1009 for a frame too large, 1007 for a text frame that is not UTF-8,
/// 1002 for broken framing (an unmasked frame, reserved bits, an unknown
/// opcode, a fragmented control frame). `None` for a plain I/O error.
pub fn violation_close_code(err: &std::io::Error) -> Option<(u16, &'static str)> {
    let text = err.to_string();
    if is_too_big(err) {
        Some((crate::errors::close::TOO_BIG, "frame too large"))
    } else if text.starts_with("UTF-8 encoding error") {
        Some((crate::errors::close::INVALID_DATA, "text frame is not UTF-8"))
    } else if text.starts_with("WebSocket protocol error") {
        Some((crate::errors::close::PROTOCOL, "WebSocket protocol error"))
    } else {
        None
    }
}

/// A token bucket local to one connection (`governor`'s GCRA).
pub struct Bucket(DefaultDirectRateLimiter);

impl Bucket {
    fn new(burst: u32, per_sec: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_sec).expect("a rate")).allow_burst(NonZeroU32::new(burst).expect("a burst"));
        Bucket(RateLimiter::direct(quota))
    }

    /// Invalid frames tolerated: 10 at once, one more per second.
    pub fn bad_frames() -> Self {
        Bucket::new(10, 1)
    }

    /// Frames other than sends: 100 at once, 50 a second.
    pub fn frames() -> Self {
        Bucket::new(100, 50)
    }

    /// Takes a token: `Err` says in how many milliseconds the next one comes.
    pub fn take(&self) -> Result<(), u64> {
        self.0.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_millis() as u64).max(1)
        })
    }
}

pub struct FrameHandler {
    gateway: Gateway,
    session: std::sync::Arc<Session>,
    bad: Bucket,
    frames: Bucket,
}

impl FrameHandler {
    pub fn new(gateway: Gateway, session: std::sync::Arc<Session>) -> Self {
        FrameHandler { gateway, session, bad: Bucket::bad_frames(), frames: Bucket::frames() }
    }

    fn reply(&self, text: String) {
        self.session.push(Outbound::Frame(text));
    }

    fn refuse(&mut self, refused: Refused) {
        if self.bad.take().is_ok() {
            self.reply(refused.frame());
        } else {
            self.session.kick(close::POLICY);
        }
    }

    pub fn binary(&mut self) {
        self.refuse(binary_refused());
    }

    pub async fn text(&mut self, text: &str) {
        let (reference, event) = match parse(text) {
            Ok(parsed) => parsed,
            Err(refused) => return self.refuse(refused),
        };
        // Sends and message changes have their own per-user limit, shared with REST across nodes.
        if !matches!(event, ClientEvent::Send(_) | ClientEvent::Edit(_) | ClientEvent::Delete(_) | ClientEvent::ReactionSet(_))
            && let Err(retry_after_ms) = self.frames.take()
        {
            let err = ApiError::RateLimited { retry_after_ms };
            return self.reply(api_error_frame(reference.as_deref(), &err));
        }
        let r = reference.as_deref();
        let span = tracing::debug_span!("frame", kind = event.kind().as_str(), id = r);
        if let Err(err) = self.event(r, event).instrument(span).await {
            tracing::debug!(code = err.code().as_str(), "frame refused");
            self.reply(api_error_frame(r, &err));
        }
    }

    async fn event(&mut self, r: Option<&str>, event: ClientEvent) -> Result<(), ApiError> {
        let gw = &self.gateway.inner;
        let user_id = self.session.user_id;
        match event {
            ClientEvent::Auth(_) => Err(ApiError::new(ErrorCode::AlreadyAuthenticated, "this connection is already authenticated")),
            ClientEvent::Ping(_) => {
                let ttl_ms = gw.ctx.settings.presence_ttl_secs.max(1) * 1000;
                let came_online =
                    presence::touch(&gw.ctx.fast_redis, &gw.ctx.keys, user_id, self.session.id, &gw.ctx.node_id, ttl_ms).await;
                self.reply(ServerEvent::Pong(Pong { reference: r.map(str::to_owned) }).encode());
                if came_online == Some(true) {
                    crate::presence::announce(&gw.ctx, user_id, PresenceStatus::Online, None).await;
                }
                Ok(())
            }
            ClientEvent::Send(data) => self.send(r, data).await,
            ClientEvent::Delivered(receipt) => self.receipt(r, receipt.conversation_id, receipt.seq, Receipt::Delivered).await,
            ClientEvent::Read(receipt) => self.receipt(r, receipt.conversation_id, receipt.seq, Receipt::Read).await,
            ClientEvent::Typing(typing) => self.typing(typing).await,
            ClientEvent::PresenceSubscribe(request) => {
                let users: Vec<_> = request.user_ids.into_iter().collect::<HashSet<_>>().into_iter().collect();
                if users.is_empty() || users.len() > MAX_PRESENCE_USERS {
                    return Err(ApiError::new(ErrorCode::InvalidUserIds, format!("`userIds` must list 1 to {MAX_PRESENCE_USERS} users")));
                }
                let (frames, refused) = crate::presence::snapshot(&gw.ctx, user_id, &users, r).await?;
                for update in frames {
                    self.reply(update);
                }
                if refused > 0 {
                    return Err(ApiError::new(ErrorCode::NotAPeer, format!("{refused} of the users share no conversation with you")));
                }
                Ok(())
            }
            ClientEvent::Edit(data) => self.change(r, data.into()).await,
            ClientEvent::Delete(data) => self.change(r, data.into()).await,
            ClientEvent::ReactionSet(data) => self.change(r, data.into()).await,
            ClientEvent::Sync(request) => {
                let (result, up_to) = sync::sync(&gw.ctx, user_id, request, r.map(str::to_owned)).await?;
                self.session.push(Outbound::Synced { frame: ServerEvent::SyncResult(result).encode(), up_to });
                Ok(())
            }
        }
    }

    async fn send(&mut self, r: Option<&str>, data: SendData) -> Result<(), ApiError> {
        let target = match (data.conversation_id, data.receiver_id) {
            (Some(c), None) => Target::Conversation(c),
            (None, Some(peer)) => Target::Peer(peer),
            _ => return Err(ApiError::new(ErrorCode::InvalidTarget, "give exactly one of `conversationId` and `receiverId`")),
        };
        let message = NewMessage {
            client_msg_id: data.client_msg_id,
            kind: data.kind.unwrap_or(MessageType::Text),
            text: data.text,
            payload: data.payload,
            reply_to: data.reply_to,
        };
        let client_msg_id = message.client_msg_id.clone();
        self.session.remember_send(&client_msg_id);
        let sent = self.gateway.inner.commands.send(self.session.user_id, target, message).await;
        let appended = match sent {
            Ok(appended) => appended,
            Err(err) => {
                self.session.forget_send(&client_msg_id);
                return Err(err);
            }
        };
        let m = appended.message;
        let ack = Ack {
            reference: r.map(str::to_owned),
            client_msg_id: m.client_msg_id,
            message_id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            created_at: m.created_at,
        };
        // The ack moves no per-conversation position: the message's own live
        // copy (never pushed back to this device) does, in order behind the peer's.
        self.session.push(Outbound::Frame(ServerEvent::Ack(ack).encode()));
        Ok(())
    }

    /// A message change: applied and committed before the next frame is
    /// read, answered to this session with `ref`; the fan-out tells the
    /// members' other sessions.
    async fn change(&mut self, r: Option<&str>, change: changes::Change) -> Result<(), ApiError> {
        let frame = changes::apply(&self.gateway.inner.commands, &self.session, change, r).await?;
        self.reply(frame);
        Ok(())
    }

    /// Queues a receipt, in order behind this connection's earlier ones, and
    /// goes on to the next frame: a receipt has no answer, so the reader does
    /// not wait for its commit (a send behind it would). A refused receipt
    /// still gets its `error` frame, once its batch is done.
    async fn receipt(&mut self, r: Option<&str>, conversation_id: ConversationId, seq: i64, receipt: Receipt) -> Result<(), ApiError> {
        let outcome = self.gateway.inner.commands.queue_receipt(self.session.user_id, conversation_id, seq, receipt).await?;
        let (session, reference) = (self.session.clone(), r.map(str::to_owned));
        tokio::spawn(async move {
            if let Err(err) = outcome.await {
                tracing::debug!(code = err.code().as_str(), "receipt refused");
                session.push(Outbound::Frame(api_error_frame(reference.as_deref(), &err)));
            }
        });
        Ok(())
    }

    /// Forwards typing to the peer; nothing is stored.
    async fn typing(&mut self, typing: TypingIn) -> Result<(), ApiError> {
        let gw = &self.gateway.inner;
        let user_id = self.session.user_id;
        let key = (typing.conversation_id, user_id);
        let peer = match gw.peers.get(&key).await {
            Some(peer) => peer,
            None => {
                let peer =
                    store::peer_in(&gw.ctx.db, user_id, typing.conversation_id).await?.ok_or_else(ApiError::conversation_not_found)?;
                gw.peers.insert(key, peer).await;
                peer
            }
        };
        let out = TypingOut { conversation_id: typing.conversation_id, user_id, state: typing.state };
        let frame = ServerEvent::Typing(out.clone()).encode();
        gw.ctx.live.publish(vec![gw.ctx.live.typing(vec![peer], &out, &frame)]).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_frames_are_recognised_in_the_error_poem_hands_over() {
        use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
        let err = Error::Capacity(CapacityError::MessageTooLong { size: 10, max_size: 5 });
        assert!(is_too_big(&std::io::Error::other(err.to_string())));
        assert!(!is_too_big(&std::io::Error::other("connection reset")));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let bad = Bucket::bad_frames();
        assert!((0..10).all(|_| bad.take().is_ok()));
        let retry = bad.take().unwrap_err();
        assert!((1..=1000).contains(&retry), "{retry}");
    }

    #[test]
    fn parse_names_the_frame_in_every_refusal_it_can() {
        let code = |text: &str| parse(text).map(|_| ()).unwrap_err();
        assert_eq!(code("nope").code, ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"id":"x"}"#).reference.as_deref(), Some("x"));
        let unknown = code(r#"{"type":"what","id":"y"}"#);
        assert_eq!((unknown.code, unknown.reference.as_deref()), (ErrorCode::UnknownType, Some("y")));
        let ping = duet_common::protocol::ClientFrame { id: Some("z".into()), ts: None, event: ClientEvent::Ping(Default::default()) };
        let (id, event) = parse(&ping.encode()).unwrap();
        assert_eq!((id.as_deref(), event), (Some("z"), ClientEvent::Ping(Default::default())));
    }
}
