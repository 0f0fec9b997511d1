//! One WebSocket connection of a chat session: the sending half, owned by
//! the session loop, and a reader task that decodes every frame, stamps its
//! arrival and hands it over. A connection that ends, errors or cannot take
//! a frame in time reports itself lost; it never fails the run.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::frames::{self, Frame};
use crate::client::{self, WsRx, WsTx};

pub(crate) struct Conn {
    /// Which connection of the session this is (1, 2, …): live streams are
    /// checked per connection.
    pub(crate) no: u32,
    /// The server's `presence.ping` interval.
    pub(crate) heartbeat: Duration,
    tx: WsTx,
    reader: JoinHandle<()>,
    pub(crate) events: mpsc::UnboundedReceiver<(Instant, Frame)>,
}

impl Conn {
    /// Connects and authenticates within `limit`.
    pub(crate) async fn open(url: &str, token: &str, no: u32, limit: Duration) -> anyhow::Result<Conn> {
        let (tx, rx, heartbeat_ms) = tokio::time::timeout(limit, client::connect(url, token, None))
            .await
            .map_err(|_| anyhow::anyhow!("no auth.ok within {limit:?}"))??;
        let (events_tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read(rx, events_tx));
        Ok(Conn { no, heartbeat: Duration::from_millis(heartbeat_ms), tx, reader, events })
    }

    /// Sends a frame; false when the connection is gone or did not take it within `limit`.
    pub(crate) async fn send(&mut self, message: WsMessage, limit: Duration) -> bool {
        matches!(tokio::time::timeout(limit, self.tx.send(message)).await, Ok(Ok(())))
    }

    /// Drops the TCP connection without a close frame, as a client that
    /// vanishes does (the reader's half goes with its task).
    pub(crate) fn vanish(self) {
        self.reader.abort();
    }

    /// Ends the connection politely.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tx.send(WsMessage::Close(None))).await;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Forwards every frame until the connection ends, then says so once.
async fn read(mut rx: WsRx, events: mpsc::UnboundedSender<(Instant, Frame)>) {
    loop {
        let next = rx.next().await;
        let at = Instant::now();
        let frame = match next {
            Some(Ok(WsMessage::Text(text))) => frames::decode(&text),
            Some(Ok(WsMessage::Close(_)) | Err(_)) | None => Frame::Closed,
            Some(Ok(_)) => continue,
        };
        let last = matches!(frame, Frame::Closed);
        if events.send((at, frame)).is_err() || last {
            return;
        }
    }
}
