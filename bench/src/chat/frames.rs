//! The server frames `duet-bench chat` reads, decoded on each connection's
//! reader task (and stamped with their arrival time there, so a busy
//! session loop never adds to the latencies it reports).

use duet_common::protocol::ServerKind;
use serde::Deserialize;

use crate::client::Incoming;

/// A message as a `chat.message.new` or a `chat.sync.result` carries it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireMessage {
    pub(crate) id: String,
    pub(crate) seq: i64,
    pub(crate) sender_id: String,
    pub(crate) client_msg_id: String,
}

/// What a connection heard.
#[derive(Debug)]
pub(crate) enum Frame {
    Ack {
        client_msg_id: String,
        message_id: String,
        seq: i64,
    },
    Message(WireMessage),
    /// A `chat.sync.result` for the one conversation asked about.
    Synced {
        reference: Option<String>,
        messages: Vec<WireMessage>,
        has_more: bool,
    },
    Error {
        reference: Option<String>,
        code: String,
        retry_after_ms: Option<u64>,
    },
    /// Pongs, receipts, presence, typing: proof of life, nothing to record.
    Other,
    /// A frame that did not decode.
    Bad(String),
    /// The connection ended (close frame, end of stream or error).
    Closed,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ack {
    client_msg_id: String,
    message_id: String,
    seq: i64,
}

#[derive(Deserialize)]
struct NewMessage {
    message: WireMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncConversation {
    messages: Vec<WireMessage>,
    has_more: bool,
}

#[derive(Deserialize)]
struct SyncResult {
    #[serde(rename = "ref")]
    reference: Option<String>,
    conversations: Vec<SyncConversation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorData {
    code: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    retry_after_ms: Option<u64>,
}

/// Decodes one text frame.
pub(crate) fn decode(text: &str) -> Frame {
    match try_decode(text) {
        Ok(frame) => frame,
        Err(e) => Frame::Bad(format!("{e}: {}", text.chars().take(200).collect::<String>())),
    }
}

fn try_decode(text: &str) -> serde_json::Result<Frame> {
    let incoming: Incoming = serde_json::from_str(text)?;
    let data = incoming.data.get();
    Ok(match incoming.kind {
        ServerKind::Ack => {
            let ack: Ack = serde_json::from_str(data)?;
            Frame::Ack { client_msg_id: ack.client_msg_id, message_id: ack.message_id, seq: ack.seq }
        }
        ServerKind::Message => Frame::Message(serde_json::from_str::<NewMessage>(data)?.message),
        ServerKind::SyncResult => {
            let result: SyncResult = serde_json::from_str(data)?;
            // One conversation is asked for at a time; a result without it has nothing past the cursor.
            let (messages, has_more) = result.conversations.into_iter().next().map(|c| (c.messages, c.has_more)).unwrap_or_default();
            Frame::Synced { reference: result.reference, messages, has_more }
        }
        ServerKind::Error => {
            let e: ErrorData = serde_json::from_str(data)?;
            Frame::Error { reference: e.reference, code: e.code, retry_after_ms: e.retry_after_ms }
        }
        _ => Frame::Other,
    })
}
