//! One authenticated WebSocket session: the handle the hub and the reader
//! use to reach its writer.
//!
//! Everything meant for the client goes through one bounded queue, with
//! `try_send`: a full queue means the client stopped reading, and the
//! session is closed with 1013 instead of buffering without bound.

use duet_common::ids::{AuthSessionId, ConversationId, SessionId, UserId};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

use duet_common::protocol::TypingState;
use tokio::sync::{Notify, mpsc};

use crate::errors::close;

/// A message event from the live channel, shared by every local session it goes to.
#[derive(Debug)]
pub struct LiveMessage {
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub sender_id: UserId,
    pub client_msg_id: String,
    /// The ready `chat.message.new` frame.
    pub frame: Arc<str>,
}

/// What a session's writer is asked to do, in order.
#[derive(Debug)]
pub enum Outbound {
    /// A ready frame (a reply, a receipt, a presence update).
    Frame(String),
    /// A ready frame shared between sessions.
    Shared(Arc<str>),
    /// A message of a conversation: pushed in seq order, gaps filled from PostgreSQL.
    Message(Arc<LiveMessage>),
    /// The peer is typing (or stopped); the writer expires a `start` by itself.
    Typing { conversation_id: ConversationId, user_id: UserId, state: TypingState, frame: Arc<str> },
    /// A sync result; afterwards the client holds each conversation up to the given seq.
    Synced { frame: String, up_to: Vec<(ConversationId, i64)> },
    /// Live events may have been lost (Redis reconnect or lag): catch up from PostgreSQL.
    Resync,
    /// Close the connection after what is queued before it.
    Close(u16, &'static str),
}

/// The kick that means "the socket is gone": stop without writing a close.
pub const GONE: u16 = u16::MAX;

/// How many of its own sends a session remembers, waiting for their live copy.
const OWN_SENDS: usize = 32;

pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    /// The sign-in whose token opened the session: revoking it closes the session.
    pub auth: AuthSessionId,
    queue: mpsc::Sender<Outbound>,
    /// A close code that jumps the queue (slow reader, flood, oversized frame), 0 when none.
    kicked: AtomicU16,
    kick: Notify,
    /// Client message ids this session sent whose live copy has not come back:
    /// the copy is not pushed back to the device that sent it.
    own_sends: Mutex<VecDeque<String>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(user_id: UserId, auth: AuthSessionId, queue: mpsc::Sender<Outbound>) -> Arc<Self> {
        Arc::new(Session {
            id: SessionId::new(),
            user_id,
            auth,
            queue,
            kicked: AtomicU16::new(0),
            kick: Notify::new(),
            own_sends: Mutex::new(VecDeque::new()),
        })
    }

    /// Queues `item`; a full queue closes the session with 1013. False if the session is gone.
    pub fn push(&self, item: Outbound) -> bool {
        match self.queue.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick(close::TRY_AGAIN);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the session with 4401 after what is queued (or at once if the
    /// queue is full): its token's sign-in ended or the token expired.
    pub fn end(&self, reason: &'static str) {
        if !self.push(Outbound::Close(close::UNAUTHORIZED, reason)) {
            self.kick(close::UNAUTHORIZED);
        }
    }

    /// Stops the writer without a close frame: the client is already gone.
    pub fn stop(&self) {
        self.kick(GONE);
    }

    /// Closes the session with `code` ahead of anything queued. The first code wins.
    pub fn kick(&self, code: u16) {
        if self.kicked.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.kick.notify_one();
        }
    }

    /// Resolves once the session is kicked, with the close code.
    pub async fn kicked(&self) -> u16 {
        loop {
            let code = self.kicked.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.kick.notified().await;
        }
    }

    pub fn remember_send(&self, client_msg_id: &str) {
        let mut own = self.own_sends.lock().expect("own sends poisoned");
        if own.len() == OWN_SENDS {
            own.pop_front();
        }
        own.push_back(client_msg_id.to_owned());
    }

    /// Forgets a send; true if it was remembered.
    pub fn forget_send(&self, client_msg_id: &str) -> bool {
        let mut own = self.own_sends.lock().expect("own sends poisoned");
        match own.iter().position(|id| id == client_msg_id) {
            Some(i) => {
                own.remove(i);
                true
            }
            None => false,
        }
    }
}
