//! One process's live fan-out: each event goes straight to this node's own
//! sessions, then through Redis Pub/Sub to every other node that holds a
//! session of its users (docs/decisions/0001-live-delivery.md).
//!
//! The node's own sessions need no Redis hop. The realtime gateway attaches
//! its hub as [`LocalSessions`] and is handed each event as the very payload
//! a channel would carry; the payload names its origin node, so the node's
//! subscriber skips the copy Redis sends back.
//!
//! The writers that commit messages and receipts publish through a
//! [`Publisher`]: local delivery at once, the Redis publish queued behind the
//! writer's earlier ones, so the writer answers its callers and starts its
//! next batch without waiting for Redis.

use crate::ids::{AuthSessionId, UserId};
use std::sync::{Arc, LazyLock, OnceLock};

use fred::prelude::*;
use fred::types::scripts::Script;
use tokio::sync::mpsc;

use crate::domain::Message;
use crate::keys::Keys;
use crate::live::{Live, decode, encode_message, encode_other, encode_revoked, encode_typing};
use crate::protocol::TypingOut;

/// Batches a writer's publisher holds before the writer waits for Redis.
const PUBLISHER_QUEUE: usize = 64;
/// Most events in one script call: Redis runs nothing else meanwhile.
const EVENTS_PER_CALL: usize = 64;

/// This node's sessions, reached without Redis (the realtime gateway's hub).
pub trait LocalSessions: Send + Sync {
    /// Hands `event` to `user`'s sessions on this node, as the user's channel would.
    fn deliver(&self, user: UserId, event: &Live<'_>);
}

/// A live event and the users whose channels it goes to.
pub struct Event {
    users: Vec<UserId>,
    payload: String,
}

/// Cheap to clone: every clone reaches the same local sessions.
#[derive(Clone)]
pub struct Fanout {
    redis: Pool,
    keys: Keys,
    /// This process (`AppContext::node_id`), named in every payload.
    origin: Arc<str>,
    /// The gateway's sessions, once it has started; never set on a node without one.
    local: Arc<OnceLock<Arc<dyn LocalSessions>>>,
}

impl Fanout {
    pub fn new(redis: Pool, keys: Keys, origin: &str) -> Self {
        Fanout { redis, keys, origin: Arc::from(origin), local: Arc::new(OnceLock::new()) }
    }

    /// The node that events published here come from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Delivers every later event to `local` directly. One gateway per process.
    pub fn attach(&self, local: Arc<dyn LocalSessions>) {
        if self.local.set(local).is_err() {
            tracing::error!("a second gateway attached to one process's fan-out; it gets events through Redis only");
        }
    }

    /// `chat.message.new` for the message's receiver and sender.
    pub fn message(&self, message: &Message) -> Event {
        Event { users: vec![message.receiver_id, message.sender_id], payload: encode_message(message, &self.origin) }
    }

    /// `chat.typing` (its ready frame) for `users`.
    pub fn typing(&self, users: Vec<UserId>, typing: &TypingOut, frame: &str) -> Event {
        Event { users, payload: encode_typing(typing.conversation_id, typing.user_id, typing.state, frame, &self.origin) }
    }

    /// A ready frame for `users`.
    pub fn frame(&self, users: Vec<UserId>, frame: &str) -> Event {
        Event { users, payload: encode_other(frame, &self.origin) }
    }

    /// The revocation of `user`'s sign-in `session` (`None`: all of them), for their WebSockets.
    pub fn revoked(&self, user: UserId, session: Option<AuthSessionId>) -> Event {
        Event { users: vec![user], payload: encode_revoked(session, &self.origin) }
    }

    /// Delivers the events to this node's sessions, then publishes them.
    /// Failures are logged, never returned: a message is already durable,
    /// and receivers catch up from PostgreSQL.
    pub async fn publish(&self, events: Vec<Event>) {
        self.deliver_local(&events);
        publish_all(&self.redis, &self.keys, events).await;
    }

    /// Delivers the events to this node's sessions, and publishes them from
    /// a task of their own, without waiting. Events handed over this way may
    /// reach Redis in any order; gateways put a conversation's messages back
    /// in order (or fill them from PostgreSQL).
    pub fn spawn_publish(&self, events: Vec<Event>) {
        self.deliver_local(&events);
        let (redis, keys) = (self.redis.clone(), self.keys.clone());
        tokio::spawn(async move { publish_all(&redis, &keys, events).await });
    }

    /// A publisher whose Redis publishes leave in the order they are handed over.
    pub fn publisher(&self) -> Publisher {
        let (queue, mut batches) = mpsc::channel::<Vec<Event>>(PUBLISHER_QUEUE);
        let (redis, keys) = (self.redis.clone(), self.keys.clone());
        tokio::spawn(async move {
            while let Some(events) = batches.recv().await {
                publish_all(&redis, &keys, events).await;
            }
        });
        Publisher { fanout: self.clone(), queue }
    }

    fn deliver_local(&self, events: &[Event]) {
        let Some(local) = self.local.get() else { return };
        for event in events {
            // Our own header: reading it parses no JSON.
            let Some((live, _)) = decode(&event.payload) else { continue };
            for user in &event.users {
                local.deliver(*user, &live);
            }
        }
    }
}

/// One writer's way out: see the module docs. Its task stops once the publisher is dropped.
pub struct Publisher {
    fanout: Fanout,
    queue: mpsc::Sender<Vec<Event>>,
}

impl Publisher {
    /// Delivers the events to this node's sessions now and queues their
    /// Redis publish; waits only while Redis is that far behind.
    pub async fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.fanout.deliver_local(&events);
        if self.queue.send(events).await.is_err() {
            tracing::warn!("live publisher stopped; other nodes' receivers will catch up from PostgreSQL");
        }
    }
}

/// Publishes each event to its users' channels, in order, many events to a
/// round trip: a call costs a round trip and a syscall pair on each side,
/// far more than a PUBLISH, so a writer's batch costs one call.
async fn publish_all(redis: &Pool, keys: &Keys, events: Vec<Event>) {
    let Some(first) = events.first() else { return };
    // Events published one at a time leave through one connection per
    // conversation (chosen by the pair's smaller id), so Redis sees them in
    // the order they were sent. A batch is in order within its call.
    let route = first.users.iter().min().map(|u| u.0.as_u128() as usize).unwrap_or(0);
    let clients = redis.clients();
    let client = &clients[route % clients.len()];
    if !client.is_connected() {
        tracing::debug!("Redis down: live publish skipped; receivers will catch up from PostgreSQL");
        return;
    }
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let mut chunk: Vec<Event> = events.by_ref().take(EVENTS_PER_CALL).collect();
        let sent: Result<i64, Error> = match chunk.as_slice() {
            [Event { users, .. }] if users.len() == 1 => {
                let Event { users, payload } = chunk.pop().expect("one event");
                client.publish(keys.user_channel(users[0]), payload).await
            }
            _ => {
                let mut args = Vec::with_capacity(chunk.iter().map(|e| 2 + e.users.len()).sum());
                for Event { users, payload } in chunk {
                    args.push(users.len().to_string());
                    args.push(payload);
                    args.extend(users.iter().map(|user| keys.user_channel(*user)));
                }
                PUBLISH_ALL.evalsha_with_reload(client, Vec::<String>::new(), args).await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "live publish failed; receivers will catch up from PostgreSQL");
        }
    }
}

/// Publishes groups of ARGV = [channel count, payload, channel...]...; returns the receivers reached.
static PUBLISH_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local reached, i = 0, 1
while i <= #ARGV do
  local last = i + 1 + tonumber(ARGV[i])
  for j = i + 2, last do
    reached = reached + redis.call('PUBLISH', ARGV[j], ARGV[i + 1])
  end
  i = last + 1
end
return reached
"#,
    )
});
