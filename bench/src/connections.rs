//! `duet-bench connections`: N authenticated idle connections that ping on
//! the protocol's interval, and the server's resident memory per connection.
//!
//! Connections come from several loopback source addresses (127.0.0.2, …)
//! so that N can exceed one address's ephemeral ports. Users are shared by
//! many sessions (multi-device), since registering N accounts would measure
//! password hashing, not connections.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use duet_common::protocol::{ClientEvent, PingData};

use crate::client::{self, User};

#[derive(clap::Args)]
pub struct ConnectionsArgs {
    /// WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws
    #[arg(long)]
    pub url: String,
    /// HTTP base, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub http: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Seconds to hold them once open.
    #[arg(long, default_value_t = 30)]
    pub hold: u64,
    /// The server's pid, to read its resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Accounts the sessions are spread over.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2 …).
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ConnectionsReport {
    target: u64,
    held: u64,
    failed: u64,
    connect_rate: f64,
    server_rss_bytes: u64,
    rss_per_conn_bytes: f64,
}

pub async fn run(args: ConnectionsArgs) -> anyhow::Result<bool> {
    let http = reqwest::Client::new();
    let users_n = args.users.min(args.count as usize).max(1);
    eprintln!("registering {users_n} users…");
    let users: Vec<User> = futures_util::stream::iter(0..users_n)
        .map(|i| {
            let (http, base) = (http.clone(), args.http.clone());
            async move { client::register(&http, &base, &format!("idle{i}")).await }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let rss_before = args.server_pid.map(rss_bytes).transpose()?.unwrap_or(0);

    let held = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let progress = {
        let (held, failed) = (held.clone(), failed.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                eprint!("\rheld {:>8} failed {:>6}   ", held.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
            }
        })
    };
    let sources = args.sources.max(1);
    let opened = futures_util::stream::iter(0..args.count)
        .map(|i| {
            let user = users[i as usize % users.len()].clone();
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % u64::from(sources)) as u8));
            let (url, held, failed, stop) = (args.url.clone(), held.clone(), failed.clone(), stop_rx.clone());
            async move {
                match client::connect(&url, &user.token, Some(source)).await {
                    Ok((tx, rx, heartbeat_ms)) => {
                        held.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(idle(tx, rx, heartbeat_ms, stop, held));
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("\nconnect failed: {e:#}");
                        }
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency);
    opened.collect::<()>().await;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let held_n = held.load(Ordering::Relaxed);
    let rss_after = args.server_pid.map(rss_bytes).transpose()?.unwrap_or(0);
    let _ = stop_tx.send(true);
    progress.abort();
    eprintln!();
    let report = ConnectionsReport {
        target: args.count,
        held: held_n,
        failed: failed.load(Ordering::Relaxed),
        connect_rate: held_n as f64 / connect_secs,
        server_rss_bytes: rss_after,
        rss_per_conn_bytes: if held_n > 0 { rss_after.saturating_sub(rss_before) as f64 / held_n as f64 } else { 0.0 },
    };
    let table = format!(
        "duet-bench connections: target {}, held {}, failed {}, connect rate {:.0}/s, server RSS {:.1} MiB, {:.0} bytes/connection",
        report.target,
        report.held,
        report.failed,
        report.connect_rate,
        report.server_rss_bytes as f64 / 1048576.0,
        report.rss_per_conn_bytes
    );
    if args.json {
        eprintln!("{table}");
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{table}");
    }
    Ok(report.failed == 0 && report.held == report.target)
}

/// Holds one connection: pings with jitter on the server's interval, drops
/// whatever it receives, and closes when told to.
async fn idle(
    mut tx: client::WsTx,
    mut rx: client::WsRx,
    heartbeat_ms: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
    held: Arc<AtomicU64>,
) {
    let jitter = (std::ptr::addr_of!(tx) as u64 >> 4) % (heartbeat_ms / 4 + 1);
    let mut ping = tokio::time::interval(Duration::from_millis(heartbeat_ms - heartbeat_ms / 8 + jitter / 2));
    ping.tick().await;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = ping.tick() => {
                n += 1;
                if client::send(&mut tx, client::frame(&format!("p{n}"), ClientEvent::Ping(PingData {}))).await.is_err() {
                    break;
                }
            }
            frame = rx.next() => match frame {
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => {
                let _ = futures_util::SinkExt::send(&mut tx, WsMessage::Close(None)).await;
                return;
            }
        }
    }
    held.fetch_sub(1, Ordering::Relaxed);
}

/// Resident set size of a process, from /proc/PID/status.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kb * 1024)
}
