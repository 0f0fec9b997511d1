//! `duet-bench floor`: the least a durable relay must do for a chat message,
//! and how fast this machine does it.
//!
//! Pairs of clients send on the same open-loop schedule as `duet-bench chat`
//! (the `pacer`), over plain TCP in fixed 32-byte frames, to a relay in
//! this same process. For each message the relay commits one row to
//! PostgreSQL (`synchronous_commit` as the server has it), then writes the
//! frame to the receiver. Each receiver sends, at most every 100 ms, the
//! highest message it has seen, and the relay commits that too, as one
//! row update, like Duet's delivered receipts. Delivery latency is measured
//! as in `chat`: from the message's due time to its arrival.
//!
//! Everything else Duet does is left out on purpose: no WebSocket, TLS,
//! JSON, authentication, rate limits, Redis, acks to the sender, outbox,
//! idempotency or projections, and client and relay share one process.
//! So no Duet build can deliver faster than this on the same machine: a
//! latency target this misses is below the machine's floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::pacer::{self, Schedule};
use crate::report::{self, Percentiles};

#[derive(clap::Args)]
pub struct FloorArgs {
    /// PostgreSQL to commit to; the relay creates and drops its own two tables there.
    #[arg(long)]
    pub database_url: String,
    #[command(flatten)]
    pub schedule: Schedule,
    /// PostgreSQL connections the relay commits on (a pair always uses the same one).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Leave out the receipts.
    #[arg(long)]
    pub no_receipts: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct FloorReport {
    offered_rate: f64,
    sent: u64,
    delivered: u64,
    receipts: u64,
    delivery_ms: Percentiles,
}

/// A frame: kind, pair, the sender's side (0 or 1), and the message number
/// (for a receipt: the highest message number seen).
#[derive(Clone, Copy)]
struct Frame {
    kind: u64,
    pair: u64,
    side: u64,
    k: u64,
}

const MESSAGE: u64 = 0;
const RECEIPT: u64 = 1;
const FRAME_LEN: usize = 32;

impl Frame {
    fn encode(self) -> [u8; FRAME_LEN] {
        let mut b = [0; FRAME_LEN];
        for (i, v) in [self.kind, self.pair, self.side, self.k].into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8; FRAME_LEN]) -> Self {
        let v = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Frame { kind: v(0), pair: v(1), side: v(2), k: v(3) }
    }
}

pub async fn run(args: FloorArgs) -> anyhow::Result<bool> {
    args.schedule.check()?;
    anyhow::ensure!(args.connections > 0, "connections must be positive");
    let mut setup = PgConnection::connect(&args.database_url).await.context("Failed to connect to PostgreSQL")?;
    sqlx::raw_sql(
        "drop table if exists floor_messages, floor_members; \
         create table floor_messages (pair int not null, k bigint not null, body text not null, primary key (pair, k)); \
         create table floor_members (pair int not null, side int not null, delivered bigint not null default 0, primary key (pair, side))",
    )
    .execute(&mut setup)
    .await?;
    sqlx::query("insert into floor_members (pair, side) select p, s from generate_series(0, $1 - 1) p, generate_series(0, 1) s")
        .bind(args.schedule.pairs as i32)
        .execute(&mut setup)
        .await?;

    // The relay: one committer task per connection, each writing what it
    // commits to the receivers' sockets.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let clients = args.schedule.pairs * 2;
    let mut outs = Vec::with_capacity(clients);
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = TcpStream::connect(addr).await?;
        client.set_nodelay(true)?;
        let (server, _) = listener.accept().await?;
        server.set_nodelay(true)?;
        let (server_rx, mut server_tx) = server.into_split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<[u8; FRAME_LEN]>();
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if server_tx.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        outs.push(out_tx);
        sockets.push((client, server_rx));
    }
    let outs = Arc::new(outs);
    let mut committers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let mut conn = PgConnection::connect(&args.database_url).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
        let outs = outs.clone();
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                let stored = match f.kind {
                    MESSAGE => sqlx::query("insert into floor_messages (pair, k, body) values ($1, $2, $3)")
                        .bind(f.pair as i32)
                        .bind(f.k as i64)
                        .bind("floor message")
                        .execute(&mut conn)
                        .await
                        .map(|_| ()),
                    _ => sqlx::query("update floor_members set delivered = greatest(delivered, $3) where pair = $1 and side = $2")
                        .bind(f.pair as i32)
                        .bind(f.side as i32)
                        .bind(f.k as i64)
                        .execute(&mut conn)
                        .await
                        .map(|_| ()),
                };
                if let Err(e) = stored {
                    eprintln!("floor relay: commit failed: {e}");
                    return;
                }
                if f.kind == MESSAGE {
                    let receiver = (f.pair * 2 + (1 - f.side)) as usize;
                    let _ = outs[receiver].send(f.encode());
                }
            }
        });
        committers.push(tx);
    }

    let start = Instant::now() + Duration::from_millis(200);
    let total = args.schedule.messages();
    let schedules = pacer::start(start, args.schedule.rate, total, clients);
    let mut tasks = Vec::with_capacity(clients);
    for (client, ((socket, mut server_rx), mut schedule)) in sockets.into_iter().zip(schedules).enumerate() {
        // The relay's reader for this client.
        let committers = committers.clone();
        tokio::spawn(async move {
            let mut buf = [0; FRAME_LEN];
            while server_rx.read_exact(&mut buf).await.is_ok() {
                let f = Frame::decode(&buf);
                let _ = committers[f.pair as usize % committers.len()].send(f);
            }
        });
        // The client: sends on schedule, receipts every 100 ms, reads deliveries.
        let (pair, side) = ((client / 2) as u64, (client % 2) as u64);
        let my_deliveries = (0..total).filter(|k| (k % clients as u64) as usize == (client ^ 1)).count() as u64;
        let rate = args.schedule.rate;
        let receipts = !args.no_receipts;
        tasks.push(tokio::spawn(async move {
            let (mut rx, mut tx) = socket.into_split();
            // One past the highest message number received, for the receipts.
            let seen = Arc::new(AtomicU64::new(0));
            let reader = tokio::spawn({
                let seen = seen.clone();
                async move {
                    let mut latency = report::histogram();
                    let mut buf = [0; FRAME_LEN];
                    for _ in 0..my_deliveries {
                        rx.read_exact(&mut buf).await?;
                        let f = Frame::decode(&buf);
                        let late = Instant::now().saturating_duration_since(pacer::due(start, rate, f.k));
                        latency.record((late.as_micros() as u64).max(1))?;
                        seen.fetch_max(f.k + 1, Ordering::Relaxed);
                    }
                    anyhow::Ok(latency)
                }
            });
            let mut receipt_tick = tokio::time::interval(Duration::from_millis(100));
            let (mut sent, mut receipts_sent, mut last_receipt) = (0u64, 0u64, 0u64);
            loop {
                tokio::select! {
                    k = schedule.recv() => {
                        let Some(k) = k else { break };
                        tx.write_all(&Frame { kind: MESSAGE, pair, side, k }.encode()).await?;
                        sent += 1;
                    }
                    _ = receipt_tick.tick(), if receipts => {
                        let now_seen = seen.load(Ordering::Relaxed);
                        if now_seen > last_receipt {
                            last_receipt = now_seen;
                            tx.write_all(&Frame { kind: RECEIPT, pair, side, k: now_seen - 1 }.encode()).await?;
                            receipts_sent += 1;
                        }
                    }
                }
            }
            let latency = reader.await??;
            anyhow::Ok((latency, sent, receipts_sent))
        }));
    }

    let mut delivery: Histogram<u64> = report::histogram();
    let (mut sent, mut receipts) = (0, 0);
    for task in tasks {
        let (latency, s, r) = task.await.context("client task")??;
        delivery.add(&latency).expect("same histogram bounds");
        sent += s;
        receipts += r;
    }
    sqlx::raw_sql("drop table floor_messages, floor_members").execute(&mut setup).await?;
    let report = FloorReport {
        offered_rate: sent as f64 / args.schedule.duration as f64,
        sent,
        delivered: delivery.len(),
        receipts,
        delivery_ms: report::percentiles(&delivery),
    };
    let table = format!(
        "duet-bench floor: {} pairs, {:.0} msg/s for {} s, {} connections, receipts {}\nsent {}, delivered {}, receipts {}\n{}",
        args.schedule.pairs,
        args.schedule.rate,
        args.schedule.duration,
        args.connections,
        if args.no_receipts { "off" } else { "on" },
        report.sent,
        report.delivered,
        report.receipts,
        report::row("delivery", &report.delivery_ms),
    );
    if args.json {
        eprintln!("{table}");
        println!("{}", serde_json::to_string(&report).expect("report serializes"));
    } else {
        println!("{table}");
    }
    Ok(report.delivered == report.sent)
}
