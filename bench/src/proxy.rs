//! `duet-bench proxy`: a TCP proxy that injects network faults on command.
//!
//! `scripts/fault-suite` puts one between each Duet node and Redis, so it can
//! make Redis slow or unreachable for one node without touching Redis itself
//! (no `tc`, no network namespaces, no root). Bytes are forwarded as they
//! are; a control port takes HTTP:
//!
//! - `POST /mode/pass`: forward at once (the start mode).
//! - `POST /mode/delay?ms=N`: every chunk, both ways, is forwarded N ms after
//!   it was read: added latency, not a lower throughput (chunks are queued,
//!   not slept on one by one).
//! - `POST /mode/stall`: connections (old and new) stay open and forward
//!   nothing: an unresponsive peer, like a paused process. What was read
//!   meanwhile is forwarded when the mode changes back.
//! - `POST /mode/cut`: every connection is closed and the listening socket
//!   too, so new connections are refused: a partition the peers notice.
//! - `GET /mode`: the mode and the number of open connections, as JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use poem::http::StatusCode;
use poem::listener::TcpListener as PoemListener;
use poem::web::{Data, Json, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, Server, get, handler, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Address clients connect to, e.g. 127.0.0.1:7001
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address the proxy forwards to, e.g. 127.0.0.1:6379
    #[arg(long)]
    pub upstream: SocketAddr,
    /// Address of the HTTP control API.
    #[arg(long)]
    pub control: SocketAddr,
}

/// What the proxy does with connections and bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    Pass,
    Delay { ms: u64 },
    Stall,
    Cut,
}

/// Chunks read but not yet written, per direction: bounds the memory a
/// stalled or delayed connection holds (the reader then waits, as TCP would).
const QUEUED_CHUNKS: usize = 256;
const CHUNK_BYTES: usize = 16 * 1024;

/// The proxy's shared state: the mode every connection watches, and how
/// many connections are open (for `GET /mode`, and for tests).
#[derive(Clone)]
pub struct Proxy {
    upstream: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    open: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn new(upstream: SocketAddr) -> Self {
        Proxy { upstream, mode: Arc::new(watch::Sender::new(Mode::Pass)), open: Arc::new(AtomicUsize::new(0)) }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
        log(&format!("mode {mode:?}"));
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Accepts on `listener` until the process ends. In `cut` mode the
    /// listening socket is closed (connections are refused) and bound again
    /// at the same address when the mode changes.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        let mut listener = Some(listener);
        let mut mode = self.mode.subscribe();
        loop {
            let Some(bound) = &listener else {
                mode.wait_for(|m| *m != Mode::Cut).await?;
                listener = Some(TcpListener::bind(addr).await.with_context(|| format!("Failed to bind {addr} again after a cut"))?);
                continue;
            };
            tokio::select! {
                accepted = bound.accept() => {
                    let (client, _) = accepted.context("accept")?;
                    tokio::spawn(self.clone().connection(client));
                }
                changed = mode.wait_for(|m| *m == Mode::Cut) => {
                    changed?;
                    listener = None;
                }
            }
        }
    }

    /// One client connection: forwards both ways until either side closes,
    /// or a cut closes both.
    async fn connection(self, client: TcpStream) {
        let mut mode = self.mode.subscribe();
        let upstream = tokio::select! {
            connected = TcpStream::connect(self.upstream) => match connected {
                Ok(stream) => stream,
                // The upstream refuses: so does the proxy (the client sees its connection end).
                Err(_) => return,
            },
            _ = mode.wait_for(|m| *m == Mode::Cut) => return,
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        self.open.fetch_add(1, Ordering::Relaxed);
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        tokio::select! {
            _ = async {
                tokio::join!(
                    pipe(client_read, upstream_write, self.mode.subscribe()),
                    pipe(upstream_read, client_write, self.mode.subscribe()),
                )
            } => {}
            _ = mode.wait_for(|m| *m == Mode::Cut) => {}
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Copies `from` to `to`, each chunk held until its due time (delay) and
/// while the mode is `stall`; shuts `to` down after `from` ends.
async fn pipe(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, mode: watch::Receiver<Mode>) {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let reader_mode = mode.clone();
    let read = async move {
        let mut buf = vec![0; CHUNK_BYTES];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            let delay = match *reader_mode.borrow() {
                Mode::Delay { ms } => Duration::from_millis(ms),
                _ => Duration::ZERO,
            };
            if queue.send((Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        // Dropping the sender ends the writer once the queue is drained.
    };
    let write = async move {
        let mut mode = mode;
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if mode.wait_for(|m| *m != Mode::Stall).await.is_err() || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// The proxy is a tool process with no tracing subscriber: one line on stderr.
fn log(line: &str) {
    eprintln!("duet-bench proxy: {line}");
}

#[derive(Deserialize)]
struct DelayParams {
    ms: Option<u64>,
}

fn current(proxy: &Proxy) -> Response {
    let mut body = serde_json::to_value(proxy.mode()).expect("mode serializes");
    body["connections"] = json!(proxy.open_connections());
    Json(body).into_response()
}

#[handler]
async fn get_mode(Data(proxy): Data<&Proxy>) -> Response {
    current(proxy)
}

#[handler]
async fn mode_pass(Data(proxy): Data<&Proxy>) -> Response {
    proxy.set_mode(Mode::Pass);
    current(proxy)
}

#[handler]
async fn mode_delay(Data(proxy): Data<&Proxy>, Query(params): Query<DelayParams>) -> Response {
    let Some(ms) = params.ms else {
        let body = json!({"code": "bad_request", "message": "delay needs ?ms=N (milliseconds, a whole number)"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    proxy.set_mode(Mode::Delay { ms });
    current(proxy)
}

#[handler]
async fn mode_stall(Data(proxy): Data<&Proxy>) -> Response {
    proxy.set_mode(Mode::Stall);
    current(proxy)
}

#[handler]
async fn mode_cut(Data(proxy): Data<&Proxy>) -> Response {
    proxy.set_mode(Mode::Cut);
    current(proxy)
}

/// The control API's routes.
pub fn control(proxy: Proxy) -> impl poem::Endpoint {
    Route::new()
        .at("/mode", get(get_mode))
        .at("/mode/pass", post(mode_pass))
        .at("/mode/delay", post(mode_delay))
        .at("/mode/stall", post(mode_stall))
        .at("/mode/cut", post(mode_cut))
        .data(proxy)
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<bool> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("Failed to bind {}", args.listen))?;
    let proxy = Proxy::new(args.upstream);
    log(&format!("{} -> {}, control on http://{}", args.listen, args.upstream, args.control));
    let control = Server::new(PoemListener::bind(args.control)).run(control(proxy.clone()));
    tokio::select! {
        served = proxy.serve(listener) => served?,
        controlled = control => controlled.with_context(|| format!("control API on {}", args.control))?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server, the proxy in front of it, and the proxy's address.
    async fn setup() -> (Proxy, SocketAddr) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::new(upstream);
        tokio::spawn(proxy.clone().serve(listener));
        (proxy, addr)
    }

    /// Sends `bytes` and reads as many back, timing the round trip.
    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Duration {
        let started = std::time::Instant::now();
        stream.write_all(bytes).await.unwrap();
        let mut back = vec![0; bytes.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, bytes);
        started.elapsed()
    }

    async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn pass_forwards_bytes_both_ways_unchanged() {
        let (_proxy, addr) = setup().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        round_trip(&mut stream, b"ping").await;
        round_trip(&mut stream, &big).await;
    }

    #[tokio::test]
    async fn delay_adds_latency_each_way() {
        let (proxy, addr) = setup().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let fast = round_trip(&mut stream, b"before").await;
        proxy.set_mode(Mode::Delay { ms: 150 });
        let slow = round_trip(&mut stream, b"delayed").await;
        assert!(slow >= Duration::from_millis(300), "a 150 ms delay each way took only {slow:?} (undelayed: {fast:?})");
        proxy.set_mode(Mode::Pass);
        round_trip(&mut stream, b"after").await;
    }

    #[tokio::test]
    async fn stall_holds_bytes_until_the_mode_changes_back() {
        let (proxy, addr) = setup().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut stream, b"warm").await;
        proxy.set_mode(Mode::Stall);
        stream.write_all(b"held").await.unwrap();
        let mut back = [0; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut back)).await;
        assert!(read.is_err(), "a stalled proxy forwarded bytes");
        // A connection opened while stalled is accepted and held too.
        let mut late = TcpStream::connect(addr).await.unwrap();
        late.write_all(b"late").await.unwrap();
        proxy.set_mode(Mode::Pass);
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"held");
        late.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"late");
    }

    #[tokio::test]
    async fn cut_closes_connections_and_refuses_new_ones_until_pass() {
        let (proxy, addr) = setup().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut stream, b"warm").await;
        assert_eq!(proxy.open_connections(), 1);
        proxy.set_mode(Mode::Cut);
        let mut buf = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("the cut connection ends");
        assert!(matches!(read, Ok(0) | Err(_)), "a cut connection still delivered {read:?}");
        wait_until("no open connections", || proxy.open_connections() == 0).await;
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "a cut proxy still accepts connections");
        proxy.set_mode(Mode::Pass);
        let mut again = None;
        for _ in 0..100 {
            if let Ok(s) = TcpStream::connect(addr).await {
                again = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        round_trip(&mut again.expect("the proxy accepts again after pass"), b"back").await;
    }

    #[tokio::test]
    async fn the_control_api_switches_modes() {
        use poem::listener::{Acceptor, Listener};
        let (proxy, _) = setup().await;
        let acceptor = PoemListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(control(proxy.clone())));
        let http = reqwest::Client::new();
        let call = |method: reqwest::Method, path: &str| http.request(method, format!("http://{addr}{path}")).send();
        let answer = |r: reqwest::Response| async move { (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap()) };
        let post = reqwest::Method::POST;
        assert_eq!(
            answer(call(post.clone(), "/mode/delay?ms=40").await.unwrap()).await,
            (200, json!({"mode": "delay", "ms": 40, "connections": 0}))
        );
        assert_eq!(proxy.mode(), Mode::Delay { ms: 40 });
        assert_eq!(answer(call(post.clone(), "/mode/stall").await.unwrap()).await.0, 200);
        assert_eq!(proxy.mode(), Mode::Stall);
        assert_eq!(answer(call(post.clone(), "/mode/cut").await.unwrap()).await.0, 200);
        assert_eq!(proxy.mode(), Mode::Cut);
        assert_eq!(answer(call(post.clone(), "/mode/pass").await.unwrap()).await.0, 200);
        assert_eq!(answer(call(reqwest::Method::GET, "/mode").await.unwrap()).await, (200, json!({"mode": "pass", "connections": 0})));
        let bad = answer(call(post, "/mode/delay").await.unwrap()).await;
        assert_eq!(bad, (400, json!({"code": "bad_request", "message": "delay needs ?ms=N (milliseconds, a whole number)"})));
    }
}
