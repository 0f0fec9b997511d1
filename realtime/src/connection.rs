//! `GET /ws`: handshake checks, authentication, and a connection's reader loop.
//!
//! Before the upgrade: the `Origin` allowlist and the per-IP handshake
//! limit (answered as HTTP errors). After it: authentication, by the
//! upgrade's `Authorization: Bearer` header or a first `auth` frame within
//! `DUET_AUTH_TIMEOUT_SECS`; then the session's reader runs here while its
//! writer runs in a task of its own.

use std::time::Duration;

use duet_common::auth::Claims;
use duet_common::error::{ApiError, ErrorCode, ErrorResponse};
use duet_common::presence;
use duet_common::protocol::{AuthOk, ClientEvent, PresenceStatus, ServerEvent};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use poem::http::header;
use poem::web::websocket::{CloseCode, Message as WsMessage, WebSocket, WebSocketConfig, WebSocketStream};
use poem::{Endpoint, FromRequest, IntoResponse, Request, Response};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use crate::Gateway;
use crate::errors::{close, error_frame};
use crate::handlers::{self, FrameHandler};
use crate::session::{Outbound, Session};
use crate::writer::{SessionWriter, Sink};

type Stream = SplitStream<WebSocketStream>;

/// How long the reader waits for the writer to finish a close.
const CLOSE_GRACE: Duration = Duration::from_secs(6);

pub fn endpoint(gateway: Gateway) -> impl Endpoint + 'static {
    poem::get(WsEndpoint(gateway))
}

struct WsEndpoint(Gateway);

impl Endpoint for WsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let gw = &self.0.inner;
        if gw.stopping.is_cancelled() {
            return Ok(ErrorResponse::from(ApiError::Unavailable("the server is restarting; reconnect".into())).into_response());
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
            if !gw.ctx.settings.allowed_origins.iter().any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
                gw.metrics.refused.inc();
                return Ok(
                    ErrorResponse::from(ApiError::new(ErrorCode::OriginNotAllowed, "this Origin may not open WebSockets")).into_response()
                );
            }
        }
        if let Some(ip) = duet_common::client_ip::client_ip(&req) {
            let key = gw.ctx.keys.handshake_rate(ip);
            if let duet_common::ratelimit::Decision::Limited { retry_after_ms } = gw.handshakes.check(&gw.ctx.fast_redis, &key).await {
                gw.metrics.refused.inc();
                return Ok(ErrorResponse::from(ApiError::RateLimited { retry_after_ms }).into_response());
            }
        }
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|t| t.trim().to_owned());
        let ws = WebSocket::from_request_without_body(&req).await?;
        let gateway = self.0.clone();
        let config = socket_config(gw.ctx.settings.ws_max_frame_bytes);
        Ok(ws
            .config(config)
            .on_upgrade(move |socket| {
                let connections = gateway.inner.connections.clone();
                connections.track_future(serve(gateway, socket, bearer))
            })
            .into_response())
    }
}

/// Explicit limits: tungstenite's defaults allow 64 MiB messages and an
/// unbounded write buffer, and allocate a 128 KiB read buffer per connection.
///
/// The read buffer is what an idle connection mostly holds: 1 KiB (a chat
/// frame fits; a larger one is read in several calls, into room reserved for
/// its whole length) keeps an idle connection's memory well below what 4 KiB
/// costs (measured in `docs/benchmarks-log.md`, connections).
fn socket_config(max_frame_bytes: usize) -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 1024;
    config.write_buffer_size = 0;
    // Frames are written one at a time with backpressure, so the buffer
    // never holds more than one frame; a limit below the largest frame (a
    // sync result) would fail that write.
    config.max_write_buffer_size = usize::MAX;
    config.max_message_size = Some(max_frame_bytes);
    config.max_frame_size = Some(max_frame_bytes);
    config
}

/// Counts a connection in the metrics while it is open.
struct OpenGuard(Gateway);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.inner.metrics.connections.dec();
    }
}

async fn serve(gateway: Gateway, socket: WebSocketStream, bearer: Option<String>) {
    gateway.inner.metrics.connections.inc();
    let _open = OpenGuard(gateway.clone());
    let (mut sink, mut stream) = socket.split();
    let Some(credentials) = authenticate(&gateway, &mut sink, &mut stream, bearer).await else {
        return;
    };
    let span = tracing::info_span!("ws", user = %credentials.claims.sub, session = tracing::field::Empty);
    run_session(gateway, sink, stream, credentials).instrument(span).await;
}

/// Whom a connection serves, and until when.
struct Credentials {
    /// The token's claims: its user, its sign-in (`sid`, re-checked while
    /// the session lasts) and its `exp` (the session closes with 4401 then).
    claims: Claims,
}

/// Waits for a token that passes the checks REST applies
/// (`duet_common::auth::authenticate`); on failure the connection is closed here.
async fn authenticate(gateway: &Gateway, sink: &mut Sink, stream: &mut Stream, bearer: Option<String>) -> Option<Credentials> {
    let (token, reference) = token(gateway, sink, stream, bearer).await?;
    match duet_common::auth::authenticate(&gateway.inner.ctx, &token).await {
        Ok(claims) => Some(Credentials { claims }),
        Err(ApiError::Unavailable(_) | ApiError::Internal(_)) => {
            tracing::warn!("could not check the session; closing");
            let _ = sink.send(WsMessage::close_with(CloseCode::Again, "try again")).await;
            None
        }
        Err(refused) => refuse(gateway, sink, reference, &refused).await,
    }
}

/// Waits for a token, from the upgrade's header or a first `auth` frame
/// (with that frame's id, to answer it).
async fn token(gateway: &Gateway, sink: &mut Sink, stream: &mut Stream, bearer: Option<String>) -> Option<(String, Option<String>)> {
    let gw = &gateway.inner;
    if let Some(token) = bearer {
        return Some((token, None));
    }
    let deadline = Instant::now() + Duration::from_secs(gw.ctx.settings.auth_timeout_secs);
    let bad = handlers::Bucket::bad_frames();
    loop {
        let next = tokio::select! {
            _ = gw.stopping.cancelled() => {
                let _ = sink.send(WsMessage::close_with(CloseCode::Restart, "server restarting")).await;
                return None;
            }
            next = timeout_at(deadline, stream.next()) => next,
        };
        let reply = match next {
            Err(_) => {
                let _ = sink.send(WsMessage::close_with(CloseCode::from(close::TIMEOUT), "authentication timeout")).await;
                gw.metrics.closed(close::TIMEOUT);
                return None;
            }
            Ok(None) => return None,
            Ok(Some(Err(e))) => {
                if let Some((code, reason)) = handlers::violation_close_code(&e) {
                    let _ = sink.send(WsMessage::close_with(CloseCode::from(code), reason)).await;
                    gw.metrics.closed(code);
                }
                return None;
            }
            Ok(Some(Ok(WsMessage::Text(text)))) => match handlers::parse(&text) {
                Ok((reference, ClientEvent::Auth(auth))) => return Some((auth.token, reference)),
                Ok((reference, _)) => error_frame(reference.as_deref(), ErrorCode::Unauthorized, "authenticate first with an `auth` frame"),
                Err(refused) => {
                    if bad.take().is_err() {
                        let _ = sink.send(WsMessage::close_with(CloseCode::Policy, "too many invalid frames")).await;
                        gw.metrics.closed(close::POLICY);
                        return None;
                    }
                    refused.frame()
                }
            },
            Ok(Some(Ok(WsMessage::Binary(_)))) => handlers::binary_refused().frame(),
            Ok(Some(Ok(WsMessage::Close(_)))) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        if sink.send(WsMessage::Text(reply)).await.is_err() {
            return None;
        }
    }
}

/// Answers a refused token: an `error` frame with the refusal's code
/// (`unauthorized`, `token_expired`, `session_revoked`), then close 4401.
async fn refuse<T>(gateway: &Gateway, sink: &mut Sink, reference: Option<String>, refused: &ApiError) -> Option<T> {
    let _ = sink.send(WsMessage::Text(error_frame(reference.as_deref(), refused.code(), refused.to_string()))).await;
    let _ = sink.send(WsMessage::close_with(CloseCode::from(close::UNAUTHORIZED), "unauthorized")).await;
    gateway.inner.metrics.closed(close::UNAUTHORIZED);
    None
}

async fn run_session(gateway: Gateway, sink: Sink, mut stream: Stream, credentials: Credentials) {
    let Credentials { claims } = credentials;
    let user_id = claims.sub;
    let gw = &gateway.inner;
    let settings = &gw.ctx.settings;
    let (queue, queued) = mpsc::channel(settings.ws_outbound_queue.max(1));
    let session = Session::new(user_id, claims.sid, queue);
    tracing::Span::current().record("session", tracing::field::display(session.id));
    let ttl_ms = settings.presence_ttl_secs.max(1) * 1000;
    let auth_ok = AuthOk { user_id, session_id: session.id, heartbeat_interval_ms: (ttl_ms / 3).min(20_000) };
    session.push(Outbound::Frame(ServerEvent::AuthOk(auth_ok).encode()));
    gw.hub.register(session.clone()).await;
    let came_online = presence::touch(&gw.ctx.fast_redis, &gw.ctx.keys, user_id, session.id, &gw.ctx.node_id, ttl_ms).await;
    let writer = SessionWriter::new(sink, queued, session.clone(), gw.ctx.db.clone(), gw.typing_ttl, gw.metrics.clone());
    let mut writer = tokio::spawn(writer.run().instrument(tracing::Span::current()));
    if came_online == Some(true) {
        crate::presence::announce(&gw.ctx, user_id, PresenceStatus::Online, None).await;
    }

    let mut handler = FrameHandler::new(gateway.clone(), session.clone());
    let idle = Duration::from_millis(ttl_ms);
    let mut idle_deadline = Instant::now() + idle;
    let left = claims.exp.saturating_sub(chrono::Utc::now().timestamp()).max(0) as u64;
    let expiry = Instant::now() + Duration::from_secs(left);
    // Revocations arrive on the user's live channel; this catches one whose publish was lost.
    // The first check at a random point of the interval: connections opened together
    // (a node's clients coming back after a restart) do not all query at once.
    let recheck_every = Duration::from_secs(settings.session_recheck_secs.max(1));
    let mut recheck = Instant::now() + recheck_every.mul_f64(rand::random_range(0.5..1.0));
    let mut closing = false;
    let writer_done = loop {
        let next = tokio::select! {
            biased;
            done = &mut writer => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "session writer failed");
                }
                break true;
            }
            _ = gw.stopping.cancelled(), if !closing => {
                closing = true;
                if !session.push(Outbound::Close(close::RESTART, "server restarting; reconnect and sync")) {
                    session.kick(close::RESTART);
                }
                continue;
            }
            _ = tokio::time::sleep_until(expiry), if !closing => {
                closing = true;
                session.end("token expired; reconnect with a new one");
                continue;
            }
            _ = tokio::time::sleep_until(recheck), if !closing => {
                recheck = Instant::now() + recheck_every;
                match gw.ctx.session_check.check_now(&claims).await {
                    Err(ApiError::Unavailable(_) | ApiError::Internal(_)) => {
                        tracing::debug!("could not re-check the session; trying again later");
                    }
                    Err(_) => {
                        closing = true;
                        session.end(crate::subscriber::REVOKED);
                    }
                    Ok(()) => {}
                }
                continue;
            }
            next = timeout_at(idle_deadline, stream.next()) => next,
        };
        match next {
            Err(_) => {
                // No frame, not even a ping, for a whole presence TTL.
                session.kick(close::TIMEOUT);
                closing = true;
                idle_deadline = Instant::now() + CLOSE_GRACE;
            }
            Ok(None) => break false,
            Ok(Some(Err(e))) => {
                if let Some((code, _)) = handlers::violation_close_code(&e) {
                    session.kick(code);
                }
                break false;
            }
            Ok(Some(Ok(message))) => {
                if !closing {
                    idle_deadline = Instant::now() + idle;
                }
                match message {
                    // Boxed: an idle connection keeps no room for a command's state.
                    WsMessage::Text(text) if !closing => Box::pin(handler.text(&text)).await,
                    WsMessage::Binary(_) if !closing => handler.binary(),
                    WsMessage::Close(_) => {
                        // The writer answers the close handshake (dropping what is queued).
                        session.kick(close::NORMAL);
                        closing = true;
                    }
                    _ => {}
                }
            }
        }
    };
    if !writer_done {
        // Unless a close is under way, the socket is gone: the writer stops without writing.
        session.stop();
        if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
            writer.abort();
        }
    }
    gw.hub.unregister(&session);
    // The last session's clean close scores the user offline "now"; the sweeper announces it.
    presence::leave(&gw.ctx.fast_redis, &gw.ctx.keys, user_id, session.id).await;
}
