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
//! Plain HTTP/1.1 only (with upgrades): poem's `Server` also spoke h2c with
//! prior knowledge, which no Duet client uses.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::listener::Acceptor;
use poem::{Endpoint, IntoResponse};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `ep` on connections from `acceptor` until `shutdown` resolves;
/// then lets requests in flight finish for up to `grace`.
pub async fn serve<A, E>(
    mut acceptor: A,
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
        let (ep, stopping) = (ep.clone(), stopping.clone());
        connections.spawn(async move {
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
        });
    }
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period; stopping anyway");
    }
    Ok(())
}
