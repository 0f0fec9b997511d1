//! The HTTP server loop: poem's endpoints on hyper's HTTP/1.1 connection,
//! with the deadline poem's `Server` does not set.
//!
//! poem 3.1's `Server` gives hyper no timer, so a client that trickles its
//! headers a byte at a time (or sends nothing at all) holds a connection and
//! its task forever. Here each connection gets hyper's header-read timeout,
//! which also closes keep-alive connections idle for as long. Request
//! bodies have their own deadline in [`duet_common::http`]; upgraded
//! connections (WebSockets) leave hyper and keep the gateway's own timers.
//!
//! HTTP/1.1 only (with upgrades), in the clear or over TLS when given an
//! acceptor: poem's `Server` also spoke h2c with prior knowledge, which no
//! Duet client uses. The TLS handshake runs in the connection's own task,
//! under the header deadline, so a slow handshake never holds up accepts.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::listener::Acceptor;
use poem::{Endpoint, IntoResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `ep` on connections from `acceptor` (over TLS when `tls` is given)
/// until `shutdown` resolves; then lets requests in flight finish for up to `grace`.
pub async fn serve<A, E>(
    mut acceptor: A,
    tls: Option<TlsAcceptor>,
    ep: E,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    A: Acceptor,
    E: Endpoint + 'static,
{
    let ep = Arc::new(ep);
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = acceptor.accept() => accepted,
        };
        let (io, local, remote, scheme) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (ep, stopping, tls) = (ep.clone(), stopping.clone(), tls.clone());
        connections.spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(io, Connection { ep, local, remote, scheme, header_timeout, stopping }).await;
            };
            match tokio::time::timeout(header_timeout, tls.accept(io)).await {
                Ok(Ok(io)) => {
                    let scheme = poem::http::uri::Scheme::HTTPS;
                    serve_connection(io, Connection { ep, local, remote, scheme, header_timeout, stopping }).await
                }
                // A client speaking plain HTTP to the TLS port, a scanner, a dropped connection.
                Ok(Err(e)) => tracing::debug!(error = %e, %remote, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period; stopping anyway");
    }
    Ok(())
}

/// One accepted connection's endpoint and addresses.
struct Connection<E> {
    ep: Arc<E>,
    local: poem::web::LocalAddr,
    remote: poem::web::RemoteAddr,
    scheme: poem::http::uri::Scheme,
    header_timeout: Duration,
    stopping: CancellationToken,
}

/// Serves requests on `io` until the client leaves, or until shutdown once
/// the request in flight is answered.
async fn serve_connection<I, E>(io: I, c: Connection<E>)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    E: Endpoint + 'static,
{
    let Connection { ep, local, remote, scheme, header_timeout, stopping } = c;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (ep, local, remote, scheme) = (ep.clone(), local.clone(), remote.clone(), scheme.clone());
        async move {
            let resp = ep.get_response((req, local, remote, scheme).into()).await.into_response();
            Ok::<_, Infallible>(hyper::Response::from(resp))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopping.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
