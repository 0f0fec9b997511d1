//! One process's live fan-out: each event goes straight to this node's own
//! sessions, then through Redis sharded Pub/Sub (`SPUBLISH` on each user's
//! `user:{u}` channel) to every other node that holds a session of its
//! users (docs/decisions/0001-live-delivery.md). In a Redis Cluster a
//! channel lives on its slot's master, so fan-out scales with the masters.
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
//!
//! A live publish never makes a writer wait. Publishes go through
//! [`FastRedis`] (a short deadline and a circuit breaker); an event that
//! cannot be published (Redis failing or late, or the queue full because it
//! is) is dropped and counted (`duet_live_publish_dropped_total`), and its
//! users are remembered. Once Redis answers again, each of them is sent a
//! resync event: their gateways re-read the conversations from PostgreSQL,
//! so a dropped message reaches its receiver even when nothing follows it
//! to reveal the gap.

use crate::ids::{AuthSessionId, SessionId, UserId};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::domain::Message;
use crate::keys::Keys;
use crate::live::{Live, decode, encode_change, encode_message, encode_other, encode_resync, encode_revoked, encode_typing};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::protocol::TypingOut;
use crate::redis::{FastRedis, Unavailable};

/// Batches a writer's publisher holds; beyond them, batches are dropped (see the module docs).
const PUBLISHER_QUEUE: usize = 64;
/// Most events in one script call: Redis runs nothing else meanwhile.
const EVENTS_PER_CALL: usize = 64;
/// How often users owed a resync are told, once Redis answers.
const REPAIR_EVERY: Duration = Duration::from_millis(500);
/// Users owed a resync, at most; past it the clients' own sync repairs.
const REPAIR_MAX_USERS: usize = 100_000;
/// Users per resync event.
const REPAIR_USERS_PER_EVENT: usize = 256;

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
    out: Arc<Outlet>,
    /// The gateway's sessions, once it has started; never set on a node without one.
    local: Arc<OnceLock<Arc<dyn LocalSessions>>>,
}

/// The way to Redis, shared by every clone and publisher task.
struct Outlet {
    redis: FastRedis,
    keys: Keys,
    /// This process (`AppContext::node_id`), named in every payload.
    origin: Arc<str>,
    /// Events not published to Redis (dropped; their users are owed a resync).
    dropped: Counter,
    /// Users whose live events were dropped, to be told to resync.
    owed: Mutex<HashSet<UserId>>,
}

impl Fanout {
    /// Also starts the task that sends owed resyncs (it ends with the last clone).
    pub fn new(redis: FastRedis, keys: Keys, origin: &str, metrics: &Metrics) -> Self {
        let dropped = Counter::default();
        metrics.register(
            "live_publish_dropped",
            "Live events not published to Redis (Redis failing or late); their receivers are resynced from PostgreSQL",
            dropped.clone(),
        );
        let out = Arc::new(Outlet { redis, keys, origin: Arc::from(origin), dropped, owed: Mutex::new(HashSet::new()) });
        tokio::spawn(repair(Arc::downgrade(&out)));
        Fanout { out, local: Arc::new(OnceLock::new()) }
    }

    /// The node that events published here come from.
    pub fn origin(&self) -> &str {
        &self.out.origin
    }

    /// Delivers every later event to `local` directly. One gateway per process.
    pub fn attach(&self, local: Arc<dyn LocalSessions>) {
        if self.local.set(local).is_err() {
            tracing::error!("a second gateway attached to one process's fan-out; it gets events through Redis only");
        }
    }

    /// `chat.message.new` for the message's receiver and sender.
    pub fn message(&self, message: &Message) -> Event {
        Event { users: vec![message.receiver_id, message.sender_id], payload: encode_message(message, &self.out.origin) }
    }

    /// `chat.typing` (its ready frame) for `users`.
    pub fn typing(&self, users: Vec<UserId>, typing: &TypingOut, frame: &str) -> Event {
        Event { users, payload: encode_typing(typing.conversation_id, typing.user_id, typing.state, frame, &self.out.origin) }
    }

    /// A message change (its ready frame) for `users`' sessions, but the acting session `skip`.
    pub fn change(&self, users: Vec<UserId>, skip: Option<SessionId>, frame: &str) -> Event {
        Event { users, payload: encode_change(skip, frame, &self.out.origin) }
    }

    /// A ready frame for `users`.
    pub fn frame(&self, users: Vec<UserId>, frame: &str) -> Event {
        Event { users, payload: encode_other(frame, &self.out.origin) }
    }

    /// The revocation of `user`'s sign-in `session` (`None`: all of them), for their WebSockets.
    pub fn revoked(&self, user: UserId, session: Option<AuthSessionId>) -> Event {
        Event { users: vec![user], payload: encode_revoked(session, self.origin()) }
    }

    /// Delivers the events to this node's sessions, then publishes them
    /// (waiting at most the Redis deadline). Failures are counted and
    /// repaired, never returned: a message is already durable.
    pub async fn publish(&self, events: Vec<Event>) {
        self.deliver_local(&events);
        self.out.publish_all(events).await;
    }

    /// Delivers the events to this node's sessions, and publishes them from
    /// a task of their own, without waiting. Events handed over this way may
    /// reach Redis in any order; gateways put a conversation's messages back
    /// in order (or fill them from PostgreSQL).
    pub fn spawn_publish(&self, events: Vec<Event>) {
        self.deliver_local(&events);
        let out = self.out.clone();
        tokio::spawn(async move { out.publish_all(events).await });
    }

    /// A publisher whose Redis publishes leave in the order they are handed over.
    pub fn publisher(&self) -> Publisher {
        let (queue, mut batches) = mpsc::channel::<Vec<Event>>(PUBLISHER_QUEUE);
        let out = self.out.clone();
        tokio::spawn(async move {
            while let Some(events) = batches.recv().await {
                out.publish_all(events).await;
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
    /// Redis publish; never waits: while Redis is so far behind that the
    /// queue is full, the events are dropped and their users owed a resync.
    pub async fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.fanout.deliver_local(&events);
        match self.queue.try_send(events) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(events)) => self.fanout.out.drop_events(events, "publish queue full"),
            Err(mpsc::error::TrySendError::Closed(events)) => self.fanout.out.drop_events(events, "live publisher stopped"),
        }
    }
}

impl Outlet {
    /// Publishes each event to its users' channels, in order, many events to
    /// a round trip: a call costs a round trip and a syscall pair on each
    /// side, far more than a PUBLISH, so a writer's batch costs one call.
    async fn publish_all(&self, events: Vec<Event>) {
        let Some(first) = events.first() else { return };
        // Events published one at a time leave through one connection per
        // conversation (chosen by the pair's smaller id), so Redis sees them in
        // the order they were sent. A batch is in order within its call.
        let route = first.users.iter().min().map(|u| u.0.as_u128() as usize).unwrap_or(0);
        let clients = self.redis.pool().clients();
        let client = &clients[route % clients.len()];
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<Event> = events.by_ref().take(EVENTS_PER_CALL).collect();
            if let Err((chunk, e)) = self.publish_chunk(client, chunk).await {
                let reason = match e {
                    Unavailable::Open => "Redis skipped (circuit breaker open)",
                    _ => "Redis failed or was late",
                };
                static FAILED: LogThrottle = LogThrottle::every_10s();
                if !matches!(e, Unavailable::Open)
                    && let Some(suppressed) = FAILED.check()
                {
                    tracing::warn!(error = %e, suppressed, "live publish failed; receivers will be resynced from PostgreSQL");
                }
                self.drop_events(chunk, reason);
                // What follows would fail the same way, and must not overtake what was dropped.
                self.drop_events(events.collect(), reason);
                return;
            }
        }
    }

    /// One round trip; on failure the events come back (their users are owed a resync).
    async fn publish_chunk(&self, client: &Client, chunk: Vec<Event>) -> Result<i64, (Vec<Event>, Unavailable)> {
        let keys = &self.keys;
        let sent = match chunk.as_slice() {
            [Event { users, payload }] if users.len() == 1 => {
                let (channel, payload) = (keys.user_channel(users[0]), payload.clone());
                self.redis.call_on(client, |client| async move { client.spublish(channel, payload).await }).await
            }
            // A script runs on one node: in a cluster the channels' slots
            // differ, so each SPUBLISH goes to its own master (a pipeline:
            // still one round trip per master, in order per channel).
            _ if client.is_clustered() => {
                let publishes: Vec<(String, String)> = chunk
                    .iter()
                    .flat_map(|Event { users, payload }| users.iter().map(|user| (keys.user_channel(*user), payload.clone())))
                    .collect();
                self.redis
                    .call_on(client, |client| async move {
                        let pipeline = client.pipeline();
                        for (channel, payload) in publishes {
                            let _: () = pipeline.spublish(channel, payload).await?;
                        }
                        let reached: Vec<i64> = pipeline.all().await?;
                        Ok(reached.into_iter().sum())
                    })
                    .await
            }
            _ => {
                let mut args = Vec::with_capacity(chunk.iter().map(|e| 2 + e.users.len()).sum());
                for Event { users, payload } in &chunk {
                    args.push(users.len().to_string());
                    args.push(payload.clone());
                    args.extend(users.iter().map(|user| keys.user_channel(*user)));
                }
                self.redis
                    .call_on(client, |client| async move { PUBLISH_ALL.evalsha_with_reload(&client, Vec::<String>::new(), args).await })
                    .await
            }
        };
        sent.map_err(|e| (chunk, e))
    }

    /// Counts events that will not be published, and owes their users a resync.
    fn drop_events(&self, events: Vec<Event>, reason: &'static str) {
        if events.is_empty() {
            return;
        }
        self.dropped.inc_by(events.len() as u64);
        tracing::debug!(events = events.len(), reason, "live publish dropped; receivers will be resynced");
        let mut owed = self.owed.lock().expect("owed resyncs poisoned");
        for user in events.iter().flat_map(|e| &e.users) {
            if owed.len() >= REPAIR_MAX_USERS {
                static FULL: LogThrottle = LogThrottle::every_10s();
                if let Some(suppressed) = FULL.check() {
                    tracing::warn!(suppressed, "too many users owed a live resync; the rest catch up by their own sync");
                }
                break;
            }
            owed.insert(*user);
        }
    }
}

/// Tells users whose live events were dropped to resync, as soon as Redis
/// takes publishes again; ends once the fan-out is dropped.
async fn repair(out: Weak<Outlet>) {
    let mut tick = tokio::time::interval(REPAIR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(out) = out.upgrade() else { return };
        let owed: Vec<UserId> = std::mem::take(&mut *out.owed.lock().expect("owed resyncs poisoned")).into_iter().collect();
        if owed.is_empty() {
            continue;
        }
        let payload = encode_resync(&out.origin);
        let clients = out.redis.pool().clients();
        for (i, users) in owed.chunks(REPAIR_USERS_PER_EVENT).enumerate() {
            let event = Event { users: users.to_vec(), payload: payload.clone() };
            if out.publish_chunk(&clients[i % clients.len()], vec![event]).await.is_err() {
                // Redis still out: keep them owed (the breaker makes the next tries cheap).
                out.owed.lock().expect("owed resyncs poisoned").extend(owed[i * REPAIR_USERS_PER_EVENT..].iter().copied());
                break;
            }
        }
    }
}

/// Publishes groups of ARGV = [channel count, payload, channel...]...; returns
/// the receivers reached. On a single server only (channels of many slots).
static PUBLISH_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local reached, i = 0, 1
while i <= #ARGV do
  local last = i + 1 + tonumber(ARGV[i])
  for j = i + 2, last do
    reached = reached + redis.call('SPUBLISH', ARGV[j], ARGV[i + 1])
  end
  i = last + 1
end
return reached
"#,
    )
});
