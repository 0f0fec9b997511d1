//! `WsClient`: a real WebSocket client (tokio-tungstenite) speaking Duet's
//! protocol, with one method per frame so tests read as behaviour. Every
//! wait has a timeout that fails the test.

use duet_common::ids::{ConversationId, SessionId, UserId};
use std::time::Duration;

use duet_common::protocol::{ClientKind, ServerKind};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser};

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user_id: UserId,
    pub session_id: SessionId,
    next_id: u64,
    /// When set, `recv` pings at this interval while it waits and hides the pongs.
    keepalive: Option<Duration>,
    last_ping: Instant,
}

/// The address of the gateway of `app`.
pub fn ws_url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// Opens a WebSocket with extra request headers; the HTTP error if refused.
pub async fn open(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, tungstenite::Error> {
    let mut request = ws_url(addr).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    // No Nagle: a test that sends and then waits must not wait for delayed ACKs.
    tokio_tungstenite::connect_async_with_config(request, None, true).await.map(|(stream, _)| stream)
}

/// Opens an authenticated WebSocket whose socket has a tiny receive buffer,
/// so a client that stops reading pushes back on the server quickly.
pub async fn open_with_small_buffer(addr: std::net::SocketAddr, token: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.expect("tcp connects");
    let mut request = ws_url(addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await.expect("websocket opens");
    stream
}

impl WsClient {
    /// Connects with `Authorization: Bearer` and waits for `auth.ok`.
    pub async fn connect(app: &TestApp, user: &TestUser) -> WsClient {
        Self::connect_addr(app.addr, user).await
    }

    pub async fn connect_addr(addr: std::net::SocketAddr, user: &TestUser) -> WsClient {
        let stream = open(addr, &[("authorization", &format!("Bearer {}", user.token))]).await.expect("websocket opens");
        let mut client = WsClient::unauthenticated(stream);
        client.await_auth_ok(user).await;
        client
    }

    /// Connects and authenticates with a first `auth` frame.
    pub async fn connect_with_auth_frame(app: &TestApp, user: &TestUser) -> WsClient {
        let mut client = WsClient::raw(app).await;
        client.send(ClientKind::Auth, json!({"token": user.token})).await;
        client.await_auth_ok(user).await;
        client
    }

    /// An open, unauthenticated connection.
    pub async fn raw(app: &TestApp) -> WsClient {
        WsClient::unauthenticated(open(app.addr, &[]).await.expect("websocket opens"))
    }

    /// Wraps a stream opened with [`open`].
    pub fn from_stream(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient::unauthenticated(stream)
    }

    pub fn unauthenticated(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient {
            stream,
            user_id: UserId::default(),
            session_id: SessionId::default(),
            next_id: 0,
            keepalive: None,
            last_ping: Instant::now(),
        }
    }

    async fn await_auth_ok(&mut self, user: &TestUser) {
        let ok = self.expect(ServerKind::AuthOk).await;
        assert_eq!(ok["userId"], user.id.to_string());
        assert!(ok["heartbeatIntervalMs"].as_u64().is_some_and(|ms| ms > 0), "{ok}");
        self.user_id = user.id;
        self.session_id = ok["sessionId"].as_str().unwrap().parse().unwrap();
    }

    /// Pings by itself while waiting (for tests with a short presence TTL).
    pub fn keep_alive(&mut self, every: Duration) {
        self.keepalive = Some(every);
    }

    /// Sends a frame; returns its id.
    pub async fn send(&mut self, kind: ClientKind, data: Value) -> String {
        self.send_type(kind.as_str(), data).await
    }

    /// Sends a frame of any `type`, even one the protocol does not have; returns its id.
    pub async fn send_type(&mut self, kind: &str, data: Value) -> String {
        self.next_id += 1;
        let id = format!("f{}", self.next_id);
        let frame = json!({"type": kind, "id": id, "ts": 1_700_000_000_000u64, "data": data});
        self.send_raw(&frame.to_string()).await;
        id
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("frame sent");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream.send(Message::binary(bytes)).await.expect("frame sent");
    }

    /// The next server frame as `(type, data)`; fails on timeout or close.
    pub async fn recv(&mut self) -> (String, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let wake = match self.keepalive {
                Some(every) => (self.last_ping + every).min(deadline),
                None => deadline,
            };
            let next = match tokio::time::timeout_at(wake, self.stream.next()).await {
                Ok(next) => next,
                Err(_) if Instant::now() >= deadline => panic!("no frame within {WAIT:?}"),
                Err(_) => {
                    self.last_ping = Instant::now();
                    self.send(ClientKind::Ping, json!({})).await;
                    continue;
                }
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                    let kind = frame["type"].as_str().expect("frames have a type").to_owned();
                    assert!(frame["ts"].as_i64().is_some(), "frames have a ts: {frame}");
                    if self.keepalive.is_some() && kind == ServerKind::Pong.as_str() {
                        continue;
                    }
                    return (kind, frame["data"].clone());
                }
                Some(Ok(Message::Close(close))) => panic!("closed: {close:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("read failed: {e}"),
                None => panic!("connection ended"),
            }
        }
    }

    /// Every frame until the connection ends (closed, reset or killed); the close code if there was one.
    pub async fn drain_until_gone(&mut self) -> (Vec<(String, Value)>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next()).await.expect("the connection neither ended nor sent");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    frames.push((frame["type"].as_str().unwrap().to_owned(), frame["data"].clone()));
                }
                Some(Ok(Message::Close(close))) => return (frames, close.map(|c| c.code.into())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }

    /// The next frame, which must be of type `kind`; returns its data.
    pub async fn expect(&mut self, kind: ServerKind) -> Value {
        let (got, data) = self.recv().await;
        assert_eq!(got, kind.as_str(), "data: {data}");
        data
    }

    /// Skips frames until one of type `kind` whose data satisfies `pred`.
    pub async fn next_matching(&mut self, kind: ServerKind, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no `{}` frame within {WAIT:?}", kind.as_str());
            let (got, data) = self.recv().await;
            if got == kind.as_str() && pred(&data) {
                return data;
            }
        }
    }

    /// An `error` frame answering frame `reference`; returns its data.
    pub async fn expect_error(&mut self, reference: Option<&str>, code: &str) -> Value {
        let data = self.expect(ServerKind::Error).await;
        assert_eq!(data["code"], code, "{data}");
        assert!(data["message"].as_str().is_some_and(|m| !m.is_empty()), "{data}");
        match reference {
            Some(r) => assert_eq!(data["ref"], r, "{data}"),
            None => assert!(data.get("ref").is_none(), "{data}"),
        }
        data
    }

    /// Reads (skipping frames) until the server closes; returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        let deadline = Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await.expect("no close within the timeout");
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
                Some(Ok(Message::Close(None))) => panic!("close without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Closes cleanly and waits for the server's answer.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = self.stream.next().await {} }).await;
    }

    // ---- one method per frame ----

    pub async fn ping(&mut self) -> Value {
        let id = self.send(ClientKind::Ping, json!({})).await;
        let pong = self.next_matching(ServerKind::Pong, |_| true).await;
        assert_eq!(pong["ref"], id);
        pong
    }

    /// Sends a text message and returns the ack's data.
    pub async fn send_message(&mut self, conversation: ConversationId, text: &str) -> Value {
        let client_msg_id = Uuid::new_v4().simple().to_string();
        self.send_message_with(json!({"conversationId": conversation, "clientMsgId": client_msg_id, "text": text})).await
    }

    /// Sends a `chat.message.send` with this data and returns the ack's data.
    pub async fn send_message_with(&mut self, data: Value) -> Value {
        let id = self.send(ClientKind::Send, data.clone()).await;
        let ack = self.next_matching(ServerKind::Ack, |a| a["ref"] == id.as_str()).await;
        assert_eq!(ack["clientMsgId"], data["clientMsgId"]);
        ack
    }

    /// Sends without waiting for the ack; returns the frame id.
    pub async fn send_message_nowait(&mut self, conversation: ConversationId, client_msg_id: &str, text: &str) -> String {
        self.send(ClientKind::Send, json!({"conversationId": conversation, "clientMsgId": client_msg_id, "text": text})).await
    }

    /// The next `chat.message.new`; returns the message.
    pub async fn next_message(&mut self) -> Value {
        self.next_matching(ServerKind::Message, |_| true).await["message"].clone()
    }

    pub async fn delivered(&mut self, conversation: ConversationId, seq: i64) -> String {
        self.send(ClientKind::Delivered, json!({"conversationId": conversation, "seq": seq})).await
    }

    pub async fn read(&mut self, conversation: ConversationId, seq: i64) -> String {
        self.send(ClientKind::Read, json!({"conversationId": conversation, "seq": seq})).await
    }

    pub async fn typing(&mut self, conversation: ConversationId, state: &str) -> String {
        self.send(ClientKind::Typing, json!({"conversationId": conversation, "state": state})).await
    }

    pub async fn presence_subscribe(&mut self, users: &[UserId]) -> String {
        self.send(ClientKind::PresenceSubscribe, json!({"userIds": users})).await
    }

    /// `chat.sync` with this data; returns the result's data.
    pub async fn sync(&mut self, data: Value) -> Value {
        let id = self.send(ClientKind::Sync, data).await;
        self.next_matching(ServerKind::SyncResult, |r| r["ref"] == id.as_str()).await
    }

    /// Every message of the conversation after `after_seq`, paging until `hasMore` is false.
    pub async fn sync_conversation(&mut self, conversation: ConversationId, after_seq: i64, limit: u32) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = after_seq;
        loop {
            let result = self.sync(json!({"conversations": [{"conversationId": conversation, "afterSeq": after}], "limit": limit})).await;
            let entry = &result["conversations"][0];
            let messages = entry["messages"].as_array().unwrap().clone();
            if let Some(last) = messages.last() {
                after = last["seq"].as_i64().unwrap();
            }
            all.extend(messages);
            if entry["hasMore"] == false {
                return all;
            }
        }
    }
}

/// Ann and Bob, their conversation, and a connection of each.
pub struct Chat {
    pub ann: TestUser,
    pub bob: TestUser,
    pub conversation: ConversationId,
    pub a: WsClient,
    pub b: WsClient,
}

impl Chat {
    pub async fn open(app: &TestApp) -> Chat {
        let ann = app.register("Ann").await;
        let bob = app.register("Bob").await;
        let conversation = app.conversation(&ann, &bob).await;
        let a = WsClient::connect(app, &ann).await;
        let b = WsClient::connect(app, &bob).await;
        Chat { ann, bob, conversation, a, b }
    }
}

/// Seqs of a list of messages.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}
