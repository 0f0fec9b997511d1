//! WebSocket protocol violations close with their RFC 6455 code instead of
//! dropping the TCP connection: 1002 for broken framing, 1007 for text that
//! is not UTF-8. A raw TCP client completes the handshake, then misbehaves.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A WebSocket connection after the handshake, with nothing read beyond it.
async fn handshake(app: &TestApp) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// A client frame: `first` is FIN, RSV and opcode; masked unless told otherwise.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The close code of the server's next close frame, skipping other frames.
async fn close_code(stream: &mut TcpStream) -> u16 {
    let read = async {
        loop {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head).await.expect("a frame, not a dropped connection");
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                len = u64::from(stream.read_u16().await.unwrap());
            } else if len == 127 {
                len = stream.read_u64().await.unwrap();
            }
            let mut payload = vec![0u8; len as usize];
            stream.read_exact(&mut payload).await.unwrap();
            if head[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a close frame in time")
}

#[tokio::test]
async fn broken_framing_closes_with_1002_and_invalid_utf8_with_1007() {
    let app = TestApp::spawn().await;
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("an unmasked client frame", frame(0x81, b"{}", false), 1002),
        ("reserved bits set", frame(0xC1, b"{}", true), 1002),
        ("an unknown opcode", frame(0x83, b"{}", true), 1002),
        ("a text frame that is not UTF-8", frame(0x81, &[0xff, 0xfe, 0xfd], true), 1007),
    ];
    for (what, bytes, expected) in cases {
        let mut stream = handshake(&app).await;
        stream.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut stream).await, expected, "{what}");
    }
}

#[tokio::test]
async fn an_authenticated_session_closes_with_1002_on_broken_framing() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let mut stream = handshake(&app).await;
    let auth = serde_json::json!({"type": "auth", "id": "a", "data": {"token": ann.token}}).to_string();
    let mut bytes = vec![0x81, 0x80 | 126];
    bytes.extend_from_slice(&(auth.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    bytes.extend(auth.bytes().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    stream.write_all(&bytes).await.unwrap();
    // The answer to `auth` arrives; then an unmasked frame.
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0] & 0x0f, 0x1, "a text frame answers auth");
    let mut len = usize::from(head[1] & 0x7f);
    if len == 126 {
        len = usize::from(stream.read_u16().await.unwrap());
    }
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await.unwrap();
    stream.write_all(&frame(0x81, b"{}", false)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1002);
}
