//! Live events between nodes: the payloads that carry WebSocket frames to
//! gateways on Redis Pub/Sub channels, one per user (sent by
//! [`crate::fanout`]).
//!
//! Pub/Sub is at-most-once: nothing here is the record. Every message is in
//! PostgreSQL before it is published, carries its gap-free `seq`, and a
//! gateway that misses one repairs the gap from PostgreSQL (see
//! `docs/decisions/0001-live-delivery.md`).
//!
//! The payload is the WebSocket frame itself (`crate::protocol`), encoded
//! once by the publisher, behind a short header that carries everything a
//! gateway needs to route and order the event, so no gateway parses the
//! frame's JSON (the frame goes to the sockets as it is):
//! - `m <conversation> <seq> <sender> <clientMsgId> <origin>\n<frame>`: a message;
//! - `t <conversation> <user> <start|stop> <origin>\n<frame>`: typing;
//! - `c <session|-> <origin>\n<frame>`: a message change (`chat.message.updated`,
//!   `chat.message.hidden`) for every session of the user but `session`, the
//!   one that made the change (it has its answer, with its `ref`, already);
//! - `e <origin>\n<frame>`: anything else;
//! - `r <sid|*> <origin>\n`: the user's sign-in `sid` (or every one, `*`)
//!   was revoked: gateways close its WebSockets with 4401;
//! - `s <origin>\n`: live events for this user were dropped (Redis was
//!   failing): the user's sessions re-read their conversations from PostgreSQL;
//!
//! where `origin` is the publishing node (whose own sessions already have
//! the event). Client message ids are `[A-Za-z0-9_-]`, so a space ends them.

use crate::domain::Message;
use crate::ids::{AuthSessionId, ConversationId, SessionId, UserId};
use crate::protocol::{TypingState, message_frame};

/// A live event decoded from a channel payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Live<'a> {
    Message {
        conversation_id: ConversationId,
        seq: i64,
        sender_id: UserId,
        client_msg_id: &'a str,
        frame: &'a str,
    },
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        state: TypingState,
        frame: &'a str,
    },
    /// A message change, for every session of the user but `skip`.
    Change {
        skip: Option<SessionId>,
        frame: &'a str,
    },
    Other {
        frame: &'a str,
    },
    /// A sign-in of the user was revoked; `None`: every one.
    Revoked {
        session: Option<AuthSessionId>,
    },
    /// Live events for the user were dropped: re-read from PostgreSQL.
    Resync,
}

/// Encodes a message event published by node `origin`.
pub fn encode_message(message: &Message, origin: &str) -> String {
    format!(
        "m {} {} {} {} {origin}\n{}",
        message.conversation_id,
        message.seq,
        message.sender_id,
        message.client_msg_id,
        message_frame(message)
    )
}

/// Encodes a typing event (its ready frame) published by node `origin`.
pub fn encode_typing(conversation_id: ConversationId, user_id: UserId, state: TypingState, frame: &str, origin: &str) -> String {
    let state = match state {
        TypingState::Start => "start",
        TypingState::Stop => "stop",
    };
    format!("t {conversation_id} {user_id} {state} {origin}\n{frame}")
}

/// Encodes a message change (a ready frame) published by node `origin`,
/// for every session but `skip` (the one that made the change).
pub fn encode_change(skip: Option<SessionId>, frame: &str, origin: &str) -> String {
    match skip {
        Some(session) => format!("c {session} {origin}\n{frame}"),
        None => format!("c - {origin}\n{frame}"),
    }
}

/// Encodes any other event (a ready frame) published by node `origin`.
pub fn encode_other(frame: &str, origin: &str) -> String {
    format!("e {origin}\n{frame}")
}

/// Encodes the revocation of a sign-in (`None`: every sign-in of the user) published by node `origin`.
pub fn encode_revoked(session: Option<AuthSessionId>, origin: &str) -> String {
    match session {
        Some(session) => format!("r {session} {origin}\n"),
        None => format!("r * {origin}\n"),
    }
}

/// Encodes a resync request (see [`crate::fanout`]) published by node `origin`.
pub fn encode_resync(origin: &str) -> String {
    format!("s {origin}\n")
}

/// Decodes a channel payload into the event and the node that published
/// it; `None` for anything malformed.
pub fn decode(payload: &str) -> Option<(Live<'_>, &str)> {
    let (header, frame) = payload.split_once('\n')?;
    let mut parts = header.split(' ');
    let fields: [Option<&str>; 7] = std::array::from_fn(|_| parts.next());
    match fields {
        [Some("e"), Some(origin), None, ..] => Some((Live::Other { frame }, origin)),
        [Some("r"), Some("*"), Some(origin), None, ..] => Some((Live::Revoked { session: None }, origin)),
        [Some("r"), Some(session), Some(origin), None, ..] => Some((Live::Revoked { session: Some(session.parse().ok()?) }, origin)),
        [Some("s"), Some(origin), None, ..] => Some((Live::Resync, origin)),
        [Some("c"), Some("-"), Some(origin), None, ..] => Some((Live::Change { skip: None, frame }, origin)),
        [Some("c"), Some(session), Some(origin), None, ..] => Some((Live::Change { skip: Some(session.parse().ok()?), frame }, origin)),
        [Some("m"), Some(conversation), Some(seq), Some(sender), Some(client_msg_id), Some(origin), None] => Some((
            Live::Message {
                conversation_id: conversation.parse().ok()?,
                seq: seq.parse().ok()?,
                sender_id: sender.parse().ok()?,
                client_msg_id,
                frame,
            },
            origin,
        )),
        [Some("t"), Some(conversation), Some(user), Some(state), Some(origin), None, _] => {
            let state = match state {
                "start" => TypingState::Start,
                "stop" => TypingState::Stop,
                _ => return None,
            };
            Some((Live::Typing { conversation_id: conversation.parse().ok()?, user_id: user.parse().ok()?, state, frame }, origin))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let (conversation, sender) = (ConversationId::new(), UserId::new());
        let raw = format!("m {conversation} 42 {sender} c-1_x n1\n{{\"type\":\"x\"}}");
        let message =
            Live::Message { conversation_id: conversation, seq: 42, sender_id: sender, client_msg_id: "c-1_x", frame: "{\"type\":\"x\"}" };
        assert_eq!(decode(&raw), Some((message, "n1")));
        let typing = encode_typing(conversation, sender, TypingState::Stop, "{}", "n3");
        let expected = Live::Typing { conversation_id: conversation, user_id: sender, state: TypingState::Stop, frame: "{}" };
        assert_eq!(decode(&typing), Some((expected, "n3")));
        assert_eq!(decode(&encode_other("{}", "n2")), Some((Live::Other { frame: "{}" }, "n2")));
        assert_eq!(decode(&encode_resync("n4")), Some((Live::Resync, "n4")));
        let acting = SessionId::new();
        assert_eq!(decode(&encode_change(Some(acting), "{}", "n5")), Some((Live::Change { skip: Some(acting), frame: "{}" }, "n5")));
        assert_eq!(decode(&encode_change(None, "{}", "n5")), Some((Live::Change { skip: None, frame: "{}" }, "n5")));
        assert_eq!(decode("c nope n5\n{}"), None);
        assert_eq!(decode("m nope 1 x c n1\n{}"), None);
        assert_eq!(decode("t a b maybe n1\n{}"), None);
        assert_eq!(decode("e\n{}"), None);
        let session = AuthSessionId::new();
        assert_eq!(decode(&encode_revoked(Some(session), "n4")), Some((Live::Revoked { session: Some(session) }, "n4")));
        assert_eq!(decode(&encode_revoked(None, "n4")), Some((Live::Revoked { session: None }, "n4")));
        assert_eq!(decode("r nope n4\n"), None);
        assert_eq!(decode("garbage"), None);
    }
}
