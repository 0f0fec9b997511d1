//! Live events between nodes: the payloads that carry WebSocket frames to gateways on Redis Pub/Sub channels, one per user
//! (sent by [`crate::fanout`]).
//!
//! Pub/Sub is at-most-once: nothing here is the record. Every message is in
//! PostgreSQL before it is published, carries its gap-free `seq`, and a
//! gateway that misses one repairs the gap from PostgreSQL (see
//! `docs/decisions/0001-live-delivery.md`).
//!
//! The payload is the WebSocket frame itself (`crate::protocol`), encoded
//! once by the publisher, behind a short header the gateway reads without parsing the JSON:
//! `m <conversation> <seq> <origin>\n<frame>` for messages,
//! `e <origin>\n<frame>` for the rest, where `origin` is the publishing
//! node (whose own sessions already have the event).

use crate::ids::ConversationId;

use crate::domain::Message;
use crate::protocol::message_frame;

/// A live event decoded from a channel payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Live<'a> {
    Message { conversation_id: ConversationId, seq: i64, frame: &'a str },
    Other { frame: &'a str },
}

/// Encodes a message event published by node `origin`.
pub fn encode_message(message: &Message, origin: &str) -> String {
    format!("m {} {} {origin}\n{}", message.conversation_id, message.seq, message_frame(message))
}

/// Encodes any other event (a ready frame) published by node `origin`.
pub fn encode_other(frame: &str, origin: &str) -> String {
    format!("e {origin}\n{frame}")
}

/// Decodes a channel payload into the event and the node that published
/// it; `None` for anything malformed.
pub fn decode(payload: &str) -> Option<(Live<'_>, &str)> {
    let (header, frame) = payload.split_once('\n')?;
    let mut parts = header.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("e"), Some(origin), None, None, None) => Some((Live::Other { frame }, origin)),
        (Some("m"), Some(conversation), Some(seq), Some(origin), None) => Some((
            Live::Message { conversation_id: conversation.parse().ok()?, seq: seq.parse().ok()?, frame },
            origin,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let conversation = ConversationId::new();
        let raw = format!("m {conversation} 42 n1\n{{\"type\":\"x\"}}");
        let message = Live::Message { conversation_id: conversation, seq: 42, frame: "{\"type\":\"x\"}" };
        assert_eq!(decode(&raw), Some((message, "n1")));
        assert_eq!(decode(&encode_other("{}", "n2")), Some((Live::Other { frame: "{}" }, "n2")));
        assert_eq!(decode("m nope 1 n1\n{}"), None);
        assert_eq!(decode("e\n{}"), None);
        assert_eq!(decode("garbage"), None);
    }
}
