//! The node's one Redis Pub/Sub connection: turns channel payloads into
//! session work, and repairs what Pub/Sub may have lost.
//!
//! Pub/Sub is at-most-once. When the connection comes back after a drop
//! (also to a new master after a Sentinel or Cluster failover), when a
//! Cluster's slots moved, or when this node fell behind and the client
//! library dropped messages (broadcast lag), every local user is
//! resubscribed and every local session re-reads its conversations from
//! PostgreSQL (docs/decisions/0001-live-delivery.md).

use duet_common::ids::UserId;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use duet_common::fanout::LocalSessions;
use duet_common::live::{Live, decode};
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::{Builder, ReconnectPolicy};
use tokio::sync::broadcast::error::RecvError;

use crate::hub::Hub;
use crate::session::{LiveMessage, Outbound};

/// Builds the subscriber client and starts connecting; returns even if Redis is down.
pub async fn connect(url: &str, ca_file: Option<&Path>) -> anyhow::Result<SubscriberClient> {
    let client = Builder::from_config(duet_common::redis::config(url, ca_file)?)
        .with_performance_config(|perf| {
            perf.default_command_timeout = Duration::from_secs(2);
            // Bursts of fan-out must not overflow the client's buffer; if they
            // still do, the loss is detected and repaired (see `run`).
            perf.broadcast_channel_capacity = 16 * 1024;
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_secs(2);
            conn.internal_command_timeout = Duration::from_secs(2);
            conn.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build_subscriber_client()
        .context("Failed to build the Redis subscriber")?;
    // The connection task runs (and reconnects) on its own; its handle is not needed.
    drop(client.connect());
    let _ = tokio::time::timeout(Duration::from_secs(2), client.wait_for_connect()).await;
    Ok(client)
}

/// Dispatches channel messages to local sessions until the client is
/// dropped. Events this node published (`origin`) are skipped: its
/// sessions had them straight from the fan-out.
pub async fn run(subscriber: SubscriberClient, hub: Arc<Hub>, origin: String) {
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let mut cluster_changes = subscriber.cluster_change_rx();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let Some(user) = hub.user_of_channel(&message.channel) else { continue };
                    let Some(payload) = message.value.as_str() else { continue };
                    match decode(&payload) {
                        Some((_, from)) if from == origin => {}
                        Some((live, _)) => dispatch(&hub, user, &live),
                        None => tracing::warn!("undecodable live payload"),
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "live events dropped by the Redis client; resyncing local sessions");
                    resync(&hub);
                }
                Err(RecvError::Closed) => return,
            },
            reconnect = reconnects.recv() => match reconnect {
                Ok(_) | Err(RecvError::Lagged(_)) => resubscribe(&subscriber, &hub).await,
                Err(RecvError::Closed) => return,
            },
            change = cluster_changes.recv() => match change {
                Ok(_) | Err(RecvError::Lagged(_)) => resubscribe(&subscriber, &hub).await,
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Subscribes every local user's channel again (harmless for one still
/// subscribed) and resyncs every local session: what was published while
/// a channel was not subscribed is read from PostgreSQL.
async fn resubscribe(subscriber: &SubscriberClient, hub: &Hub) {
    let channels = hub.channels();
    // One SSUBSCRIBE names channels of one slot in a cluster; a single server takes them all at once.
    let groups: Vec<Vec<String>> = if subscriber.is_clustered() {
        let mut by_slot: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for channel in channels {
            by_slot.entry(fred::util::redis_keyslot(channel.as_bytes())).or_default().push(channel);
        }
        by_slot.into_values().collect()
    } else {
        vec![channels]
    };
    for group in groups.into_iter().filter(|group| !group.is_empty()) {
        if let Err(e) = subscriber.ssubscribe(group).await {
            tracing::warn!(error = %e, "resubscribe after a reconnect failed");
        }
    }
    resync(hub);
}

fn resync(hub: &Hub) {
    for session in hub.all() {
        session.push(Outbound::Resync);
    }
}

/// This node's own events, straight from its fan-out.
impl LocalSessions for Hub {
    fn deliver(&self, user: UserId, live: &Live<'_>) {
        if self.has_sessions(user) {
            dispatch(self, user, live);
        }
    }
}

/// The close reason of a WebSocket whose sign-in was revoked.
pub const REVOKED: &str = "session revoked; sign in again";

/// Hands an event to the user's sessions here, typed from the payload's
/// header; the frame itself goes to the sockets as it is.
fn dispatch(hub: &Hub, user: UserId, live: &Live<'_>) {
    match *live {
        Live::Message { conversation_id, seq, sender_id, client_msg_id, frame } => {
            let message =
                Arc::new(LiveMessage { conversation_id, seq, sender_id, client_msg_id: client_msg_id.to_owned(), frame: Arc::from(frame) });
            hub.deliver(user, || Outbound::Message(message.clone()));
        }
        Live::Typing { conversation_id, user_id, state, frame } => {
            let frame: Arc<str> = Arc::from(frame);
            hub.deliver(user, || Outbound::Typing { conversation_id, user_id, state, frame: frame.clone() })
        }
        Live::Change { skip, frame } => {
            let shared: Arc<str> = Arc::from(frame);
            for session in hub.sessions_of(user) {
                if Some(session.id) != skip {
                    session.push(Outbound::Shared(shared.clone()));
                }
            }
        }
        Live::Other { frame } => {
            let shared: Arc<str> = Arc::from(frame);
            hub.deliver(user, || Outbound::Shared(shared.clone()));
        }
        Live::Revoked { session } => {
            for local in hub.sessions_of(user) {
                if session.is_none_or(|revoked| revoked == local.auth) {
                    local.end(REVOKED);
                }
            }
        }
        // The publishing node dropped live events for this user while Redis was failing.
        Live::Resync => hub.deliver(user, || Outbound::Resync),
    }
}
