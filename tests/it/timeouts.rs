//! Slow clients: headers and bodies that trickle or stall are cut off.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Reads until the server closes; returns what it sent and when it closed.
async fn until_closed(stream: &mut tokio::net::tcp::OwnedReadHalf, started: Instant) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the server closes the connection");
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test]
async fn headers_trickled_a_byte_a_second_are_cut_off_at_the_header_timeout() {
    let app = TestApp::spawn_with(|s| s.http_header_timeout_secs = 2).await;
    let started = Instant::now();
    let (mut read, mut write) = TcpStream::connect(app.addr).await.unwrap().into_split();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: duet\r\nX-Slow: yes\r\n\r\n" {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let (answer, closed_after) = until_closed(&mut read, started).await;
    trickle.abort();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(closed_after < Duration::from_secs(6), "closed after {closed_after:?}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_header_timeout() {
    let app = TestApp::spawn_with(|s| s.http_header_timeout_secs = 2).await;
    let started = Instant::now();
    let (mut read, _write) = TcpStream::connect(app.addr).await.unwrap().into_split();
    let (answer, closed_after) = until_closed(&mut read, started).await;
    assert_eq!(answer, "");
    assert!(closed_after < Duration::from_secs(6), "closed after {closed_after:?}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_at_the_body_timeout() {
    let app = TestApp::spawn_with(|s| s.http_body_timeout_secs = 2).await;
    let started = Instant::now();
    let (mut read, mut write) = TcpStream::connect(app.addr).await.unwrap().into_split();
    let head = "POST /auth/login HTTP/1.1\r\nHost: duet\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":";
    write.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed_after) = until_closed(&mut read, started).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(closed_after < Duration::from_secs(8), "closed after {closed_after:?}");
}
