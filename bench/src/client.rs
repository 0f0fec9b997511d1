//! A minimal Duet client: registration over HTTP, and WebSocket sessions
//! split into a frame sender and a stream of decoded frames.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use duet_common::protocol::{AuthOk, ClientEvent, ClientFrame, ServerKind};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type WsTx = SplitSink<Ws, WsMessage>;
pub type WsRx = SplitStream<Ws>;

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// Whom this process's clients trust over TLS (`wss://`, `https://`).
struct Trust {
    /// For WebSockets: the public roots and the extra CA.
    config: Arc<ClientConfig>,
    /// The extra CA as given, for reqwest.
    ca_pem: Option<Vec<u8>>,
}

static TRUST: OnceLock<Trust> = OnceLock::new();

/// Trusts the CA certificate(s) in the PEM file `ca` besides the public
/// roots, for every client this process makes (a local CA such as
/// scripts/ca.sh's). Call it before the first connection; it can be set once.
pub fn trust_ca(ca: &Path) -> anyhow::Result<()> {
    let pem = std::fs::read(ca).with_context(|| format!("--ca-file {}", ca.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--ca-file {}: not PEM certificates", ca.display()))?;
    anyhow::ensure!(!certs.is_empty(), "--ca-file {}: no certificate in it", ca.display());
    let mut roots = public_roots();
    for cert in certs {
        roots.add(cert).with_context(|| format!("--ca-file {}: not a usable CA certificate", ca.display()))?;
    }
    let trust = Trust { config: client_config(roots), ca_pem: Some(pem) };
    TRUST.set(trust).map_err(|_| anyhow::anyhow!("the trusted CA is already set"))
}

fn trust() -> &'static Trust {
    TRUST.get_or_init(|| Trust { config: client_config(public_roots()), ca_pem: None })
}

fn public_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// On ring, like reqwest's rustls: one crypto provider in the build.
fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// An HTTP client trusting what [`trust_ca`] added.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = &trust().ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).context("the trusted CA")? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// Registers a throwaway user; returns its id and token.
pub async fn register(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<User> {
    let email = format!("bench-{}@bench.example.com", uuid::Uuid::new_v4().simple());
    let resp = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": email, "password": "plum orbit garden 71", "name": name}))
        .send()
        .await
        .context("register request")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("register body")?;
    if !status.is_success() {
        bail!("register failed: {status} {body}");
    }
    Ok(User { id: body["user"]["id"].as_str().context("user id")?.to_owned(), token: body["token"].as_str().context("token")?.to_owned() })
}

/// Registers `2 * pairs` users and one conversation per pair (users 2p and
/// 2p+1 share conversation p).
pub async fn setup_pairs(http: &reqwest::Client, base: &str, pairs: usize, name: &str) -> anyhow::Result<(Vec<User>, Vec<String>)> {
    setup_pairs_on(http, &[base.to_owned()], pairs, name).await
}

/// The node (index into the node list) user `u` of a pairs run lives on:
/// pair p's first user on node p mod N, its second on node p+1 mod N, so a
/// pair spans two nodes whenever there are two.
pub fn home_node(u: usize, nodes: usize) -> usize {
    (u / 2 + u % 2) % nodes
}

/// `setup_pairs` over several nodes: each user registers on its home node
/// (`home_node`), each conversation is made on its first user's.
pub async fn setup_pairs_on(
    http: &reqwest::Client,
    bases: &[String],
    pairs: usize,
    name: &str,
) -> anyhow::Result<(Vec<User>, Vec<String>)> {
    use futures_util::TryStreamExt;
    anyhow::ensure!(!bases.is_empty(), "no node to set up on");
    let base = |u: usize| bases[home_node(u, bases.len())].as_str();
    let users: Vec<User> = futures_util::stream::iter(0..pairs * 2)
        .map(|i| async move { register(http, base(i), &format!("{name}{i}")).await })
        .buffered(16)
        .try_collect()
        .await?;
    let conversations = futures_util::stream::iter(users.chunks(2).enumerate())
        .map(|(p, pair)| conversation(http, base(2 * p), &pair[0], &pair[1]))
        .buffered(16)
        .try_collect()
        .await?;
    Ok((users, conversations))
}

/// Gets or creates the conversation between `a` and `b`.
pub async fn conversation(http: &reqwest::Client, base: &str, a: &User, b: &User) -> anyhow::Result<String> {
    let resp = http.post(format!("{base}/conversations")).bearer_auth(&a.token).json(&json!({"peerId": b.id})).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        bail!("conversation failed: {status} {body}");
    }
    Ok(body["id"].as_str().context("conversation id")?.to_owned())
}

/// Opens an authenticated WebSocket (bearer on the upgrade request), from
/// `source` when given, and waits for `auth.ok`. Returns the split socket and
/// the heartbeat interval the server asks for.
pub async fn connect(url: &str, token: &str, source: Option<IpAddr>) -> anyhow::Result<(WsTx, WsRx, u64)> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let uri = request.uri().clone();
    let host = uri.host().context("url host")?;
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addr: SocketAddr = tokio::net::lookup_host((host, port)).await?.next().context("resolve")?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let tls = secure.then(|| Connector::Rustls(trust().config.clone()));
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(request, stream, None, tls).await.context("ws handshake")?;
    let (tx, mut rx) = ws.split();
    while let Some(frame) = rx.next().await {
        if let WsMessage::Text(text) = frame? {
            let incoming: Incoming = serde_json::from_str(&text)?;
            match incoming.kind {
                ServerKind::AuthOk => {
                    let data: AuthOk = serde_json::from_str(incoming.data.get())?;
                    return Ok((tx, rx, data.heartbeat_interval_ms));
                }
                ServerKind::Error => bail!("auth refused: {}", incoming.data.get()),
                _ => {}
            }
        }
    }
    bail!("closed before auth.ok")
}

/// A server frame, with `data` left raw until its type is known.
#[derive(Deserialize)]
pub struct Incoming<'a> {
    #[serde(rename = "type")]
    pub kind: ServerKind,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// A client frame with id `id`.
pub fn frame(id: &str, event: ClientEvent) -> WsMessage {
    WsMessage::text(ClientFrame { id: Some(id.to_owned()), ts: Some(now_ms() as i64), event }.encode())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Sends a frame, turning a closed socket into an error.
pub async fn send(tx: &mut WsTx, message: WsMessage) -> anyhow::Result<()> {
    tx.send(message).await.context("ws send")
}
