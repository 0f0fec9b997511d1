//! The node's local sessions, by user, and the Redis subscriptions that
//! follow them: a user's channel is subscribed while the user has a session
//! on this node (subscribed on the first, unsubscribed after the last).
//! Channels are shard channels (`SSUBSCRIBE`): in a Redis Cluster each
//! lives on the master of its slot, so fan-out scales with the masters.
//!
//! Subscription changes go through one task in order, so a quick
//! connect-disconnect-connect never ends unsubscribed.

use duet_common::ids::UserId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duet_common::keys::Keys;
use duet_common::redis::FastRedis;
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, PubsubInterface};
use tokio::sync::{mpsc, watch};

use crate::session::{Outbound, Session};

enum SubCommand {
    /// Subscribe, then set the flag so every session waiting on it may go on.
    Subscribe(String, watch::Sender<bool>),
    Unsubscribe(String),
}

/// A user's local sessions, and whether their channel is subscribed yet.
struct Local {
    sessions: Vec<Arc<Session>>,
    subscribed: watch::Receiver<bool>,
}

pub struct Hub {
    sessions: Mutex<HashMap<UserId, Local>>,
    subscriptions: mpsc::UnboundedSender<SubCommand>,
    keys: Keys,
    /// Says how long a new session may wait for its subscription (the Redis
    /// deadline; not at all while Redis is failing).
    redis: FastRedis,
}

impl Hub {
    /// The hub, and the task (for the caller to run) that applies its
    /// subscription changes in order.
    pub fn new(keys: Keys, subscriber: SubscriberClient, redis: FastRedis) -> (Arc<Hub>, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub { sessions: Mutex::new(HashMap::new()), subscriptions: tx, keys, redis });
        (hub, apply_subscriptions(subscriber, rx))
    }

    /// Adds a session; resolves once the user's channel is subscribed (or the attempt failed),
    /// so nothing published after `auth.ok` is missed live. A stuck Redis is
    /// waited for only as long as the Redis deadline (not at all while it is
    /// known to be failing); the session then re-reads from PostgreSQL once
    /// the subscription is made, which covers what it missed live meanwhile.
    pub async fn register(&self, session: Arc<Session>) {
        let mut subscribed = {
            let mut sessions = self.sessions.lock().expect("hub poisoned");
            let local = sessions.entry(session.user_id).or_insert_with(|| {
                let (done, subscribed) = watch::channel(false);
                let _ = self.subscriptions.send(SubCommand::Subscribe(self.keys.user_channel(session.user_id), done));
                Local { sessions: Vec::new(), subscribed }
            });
            local.sessions.push(session.clone());
            local.subscribed.clone()
        };
        // Also a second session that arrives while the first one's subscribe is in flight.
        let wait = if self.redis.healthy() { self.redis.deadline() } else { Duration::ZERO };
        let mut later = subscribed.clone();
        if tokio::time::timeout(wait, subscribed.wait_for(|done| *done)).await.is_err() {
            tokio::spawn(async move {
                if later.wait_for(|done| *done).await.is_ok() {
                    session.push(Outbound::Resync);
                }
            });
        }
    }

    /// Removes a session; unsubscribes after the user's last one on this node.
    pub fn unregister(&self, session: &Session) {
        let mut sessions = self.sessions.lock().expect("hub poisoned");
        if let Some(local) = sessions.get_mut(&session.user_id) {
            local.sessions.retain(|s| s.id != session.id);
            if local.sessions.is_empty() {
                sessions.remove(&session.user_id);
                let _ = self.subscriptions.send(SubCommand::Unsubscribe(self.keys.user_channel(session.user_id)));
            }
        }
    }

    /// The user's local sessions.
    pub fn sessions_of(&self, user_id: UserId) -> Vec<Arc<Session>> {
        self.sessions.lock().expect("hub poisoned").get(&user_id).map(|l| l.sessions.clone()).unwrap_or_default()
    }

    /// Whether the user has a session on this node.
    pub fn has_sessions(&self, user_id: UserId) -> bool {
        self.sessions.lock().expect("hub poisoned").contains_key(&user_id)
    }

    /// Gives each of the user's local sessions an item made by `make`.
    pub fn deliver(&self, user_id: UserId, make: impl Fn() -> Outbound) {
        for session in self.sessions_of(user_id) {
            session.push(make());
        }
    }

    /// Every local session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().expect("hub poisoned").values().flat_map(|l| l.sessions.iter().cloned()).collect()
    }

    /// Channels of every user with a local session.
    pub fn channels(&self) -> Vec<String> {
        let sessions = self.sessions.lock().expect("hub poisoned");
        sessions.keys().map(|user| self.keys.user_channel(*user)).collect()
    }

    /// The user whose channel this is.
    pub fn user_of_channel(&self, channel: &str) -> Option<UserId> {
        self.keys.user_of_channel(channel)
    }
}

async fn apply_subscriptions(subscriber: SubscriberClient, mut commands: mpsc::UnboundedReceiver<SubCommand>) {
    while let Some(command) = commands.recv().await {
        match command {
            SubCommand::Subscribe(channel, done) => {
                // While Redis is down, the reconnect handler subscribes every local user later.
                if !subscriber.is_connected() {
                    done.send_replace(true);
                    continue;
                }
                if let Err(e) = subscriber.ssubscribe(channel.as_str()).await {
                    // Live delivery for this user resumes when Redis reconnects
                    // (every local user is resubscribed); the client syncs meanwhile.
                    tracing::warn!(error = %e, %channel, "subscribe failed");
                }
                done.send_replace(true);
            }
            SubCommand::Unsubscribe(channel) => {
                if let Err(e) = subscriber.sunsubscribe(channel.as_str()).await {
                    tracing::warn!(error = %e, %channel, "unsubscribe failed");
                }
            }
        }
    }
}
