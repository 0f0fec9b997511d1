//! `duet-bench append`: closed-loop append throughput, for comparing the
//! group-commit path with one transaction per message.
//!
//! S senders (S/2 conversations) each send a message over REST, wait for the
//! 201, and send the next, for D seconds. Run it against a node started with
//! `DUET_APPEND_MODE=batched` and one with `single` (scripts/bench-group-commit
//! does both in one run) and compare.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::client;
use crate::report::{self, Percentiles};

#[derive(clap::Args)]
pub struct AppendArgs {
    /// HTTP base, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub http: String,
    /// Concurrent senders (each waits for its answer before sending again).
    #[arg(long, default_value_t = 256)]
    pub senders: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct AppendReport {
    senders: usize,
    seconds: f64,
    appended: u64,
    throughput: f64,
    latency_ms: Percentiles,
    errors: BTreeMap<String, u64>,
}

pub async fn run(args: AppendArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.senders >= 2 && args.senders.is_multiple_of(2), "--senders must be even and at least 2");
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.senders).build()?;
    let (users, conversations) = client::setup_pairs(&http, &args.http, args.senders / 2, "append").await?;

    let appended = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(args.duration);
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            let url = format!("{}/conversations/{}/messages", args.http, conversations[i / 2]);
            let (http, appended) = (http.clone(), appended.clone());
            tokio::spawn(async move {
                let mut latency = report::histogram();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let sent = Instant::now();
                    let resp = http
                        .post(&url)
                        .bearer_auth(&user.token)
                        .json(&json!({"clientMsgId": format!("a{i}-{n}"), "text": format!("append {n}")}))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                            latency.saturating_record(sent.elapsed().as_micros() as u64);
                            appended.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => *errors.entry(r.status().as_u16().to_string()).or_default() += 1,
                        Err(_) => *errors.entry("transport".into()).or_default() += 1,
                    }
                }
                (latency, errors)
            })
        })
        .collect();
    let mut latency = report::histogram();
    let mut errors = BTreeMap::new();
    for task in tasks {
        let (h, e) = task.await?;
        latency.add(&h).expect("same bounds");
        for (code, n) in e {
            *errors.entry(code).or_insert(0) += n;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = appended.load(Ordering::Relaxed);
    let report = AppendReport {
        senders: args.senders,
        seconds,
        appended: n,
        throughput: n as f64 / seconds,
        latency_ms: report::percentiles(&latency),
        errors,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "duet-bench append: {} senders, {:.0} appends/s ({} in {:.1} s)\n{}\nerrors: {:?}",
            report.senders,
            report.throughput,
            report.appended,
            report.seconds,
            report::row("latency", &report.latency_ms),
            report.errors
        );
    }
    Ok(report.errors.is_empty())
}
