//! Live fan-out: events published to Redis Pub/Sub channels, one per user,
//! for every gateway node that holds a session of that user.
//!
//! Pub/Sub is at-most-once: nothing here is the record. Every message is in
//! PostgreSQL before it is published, carries its gap-free `seq`, and a
//! gateway that misses one repairs the gap from PostgreSQL (see
//! `docs/decisions/0001-live-delivery.md`).
//!
//! The payload is the WebSocket frame itself, encoded once by the publisher,
//! behind a short header the gateway reads without parsing the JSON:
//! `m <conversation> <seq>\n<frame>` for messages, `e\n<frame>` for the rest.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use fred::prelude::*;
use fred::types::scripts::Script;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::Message;
use crate::redis::Keys;

/// The channel of one user's live events.
pub fn user_channel(keys: &Keys, user_id: Uuid) -> String {
    keys.key(format_args!("user:{user_id}"))
}

/// A server-to-client WebSocket frame. Server pushes carry no `id`;
/// replies carry the client's frame id as `data.ref`.
#[derive(Serialize)]
pub struct Frame<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub ts: i64,
    pub data: T,
}

impl<'a, T: Serialize> Frame<'a, T> {
    pub fn new(kind: &'a str, data: T) -> Self {
        Frame { kind, ts: Utc::now().timestamp_millis(), data }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

#[derive(Serialize)]
struct NewMessageData<'a> {
    message: &'a Message,
}

/// `chat.message.new` for `message`.
pub fn message_frame(message: &Message) -> String {
    Frame::new("chat.message.new", NewMessageData { message }).encode()
}

/// A delivered or read receipt, as forwarded to the other party.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptData {
    pub conversation_id: Uuid,
    pub seq: i64,
    pub user_id: Uuid,
    #[serde(with = "crate::domain::rfc3339")]
    pub at: DateTime<Utc>,
}

/// A live event decoded from a channel payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Live<'a> {
    Message { conversation_id: Uuid, seq: i64, frame: &'a str },
    Other { frame: &'a str },
}

/// Encodes a message event.
pub fn encode_message(message: &Message) -> String {
    format!("m {} {}\n{}", message.conversation_id, message.seq, message_frame(message))
}

/// Encodes any other event (a ready frame).
pub fn encode_other(frame: &str) -> String {
    format!("e\n{frame}")
}

/// Decodes a channel payload; `None` for anything malformed.
pub fn decode(payload: &str) -> Option<Live<'_>> {
    let (header, frame) = payload.split_once('\n')?;
    if header == "e" {
        return Some(Live::Other { frame });
    }
    let mut parts = header.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("m"), Some(conversation), Some(seq), None) => Some(Live::Message {
            conversation_id: conversation.parse().ok()?,
            seq: seq.parse().ok()?,
            frame,
        }),
        _ => None,
    }
}

/// Publishes `payload` to each user's channel in one round trip. Failures
/// are logged, never returned: the message is already durable, and the
/// receivers catch up from PostgreSQL.
pub async fn publish(redis: &Pool, keys: &Keys, users: &[Uuid], payload: String) {
    publish_all(redis, keys, vec![(users, payload)]).await;
}

/// Most events in one script call: Redis runs nothing else meanwhile.
const EVENTS_PER_CALL: usize = 64;

/// Publishes each (users, payload) in order, many events to a round trip:
/// a call costs a round trip and a syscall pair on each side, far more than
/// a PUBLISH. A group-commit writer hands over its whole batch, so a batch
/// of messages costs one call instead of one per message. Failures are
/// logged, as in [`publish`].
pub async fn publish_all(redis: &Pool, keys: &Keys, events: Vec<(&[Uuid], String)>) {
    let Some((first, _)) = events.first() else { return };
    // Events published one at a time leave through one connection per
    // conversation (chosen by the pair's smaller id), so Redis sees them in
    // the order they were sent. A batch is in order within its call.
    let route = first.iter().min().map(|u| u.as_u128() as usize).unwrap_or(0);
    let clients = redis.clients();
    let client = &clients[route % clients.len()];
    if !client.is_connected() {
        tracing::debug!("Redis down: live publish skipped; receivers will catch up from PostgreSQL");
        return;
    }
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let mut chunk: Vec<_> = events.by_ref().take(EVENTS_PER_CALL).collect();
        let sent: Result<i64, Error> = match chunk.as_slice() {
            [([user], _)] => {
                let channel = user_channel(keys, *user);
                client.publish(channel, chunk.pop().expect("one event").1).await
            }
            _ => {
                let mut args = Vec::with_capacity(chunk.iter().map(|(users, _)| 2 + users.len()).sum());
                for (users, payload) in chunk {
                    args.push(users.len().to_string());
                    args.push(payload);
                    args.extend(users.iter().map(|user| user_channel(keys, *user)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let conversation = Uuid::new_v4();
        let raw = format!("m {conversation} 42\n{{\"type\":\"x\"}}");
        assert_eq!(decode(&raw), Some(Live::Message { conversation_id: conversation, seq: 42, frame: "{\"type\":\"x\"}" }));
        assert_eq!(decode("e\n{}"), Some(Live::Other { frame: "{}" }));
        assert_eq!(decode("m nope 1\n{}"), None);
        assert_eq!(decode("garbage"), None);
    }
}
