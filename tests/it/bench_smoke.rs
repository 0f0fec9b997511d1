//! Smoke-sized `duet-bench chat` runs against real nodes: they assert only
//! the verdict (nothing acked lost, duplicated, unexpected or reordered; the
//! read side equal to PostgreSQL), never a time. The real numbers live in
//! docs/benchmarks.md.

use duet_bench::chat::{self, ChatArgs};
use duet_bench::pacer::Schedule;

use crate::helpers::TestApp;

fn args(nodes: &[&TestApp], schedule: Schedule) -> ChatArgs {
    ChatArgs {
        url: nodes.iter().map(|n| format!("ws://{}/ws", n.addr)).collect(),
        http: nodes.iter().map(|n| format!("http://{}", n.addr)).collect(),
        schedule,
        json: false,
        drain_timeout: 20,
        receipts: true,
        vanish_at: Vec::new(),
        verify_db: None,
        settle_timeout: 10,
        ca_file: None,
        stall_timeout: 10,
        text_bytes: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chat_benchmark_passes_the_consistency_checker() {
    let app = TestApp::spawn().await;
    let clean = chat::run(args(&[&app], Schedule { pairs: 4, rate: 100.0, duration: 2 })).await.expect("the benchmark runs");
    assert!(clean, "the checker found lost, unexpected or reordered messages (see the report above)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_benchmark_with_vanishing_clients_stays_clean_and_its_projections_match_postgres() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer().await;
    let mut args = args(&[&a, &b], Schedule { pairs: 10, rate: 100.0, duration: 4 });
    // Sessions 0 and 10 vanish at 1 s, 9 and 19 at 1.5 s; each is back 2 s later.
    args.vanish_at = vec![1.0, 1.5];
    args.verify_db = Some(a.settings.database_url.clone());
    let report = chat::run_report(&args).await.expect("the benchmark runs");
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(
        (report.lost, report.unexpected, report.duplicates, report.order_errors, report.unchecked),
        (0, 0, 0, 0, 0),
        "the checker's verdict"
    );
    assert_eq!(report.sent, 400, "every scheduled message went out");
    assert_eq!(report.acked, 400, "every message was acked, those due while their sender was away too");
    assert!(report.reconnects >= 4, "the four vanished sessions came back: {}", report.reconnects);
    let projections = report.projections.clone().expect("checked");
    assert_eq!((projections.checked, projections.mismatched), (20, 0), "every member of the ten conversations");
    assert!(report.clean());
    let timeline_reconnects: u64 = report.timeline.iter().map(|s| s.reconnects).sum();
    assert_eq!(timeline_reconnects, report.reconnects);
    assert_eq!(report.timeline.iter().map(|s| s.offered).sum::<u64>(), 400);
    assert!(report.timeline.iter().take(3).all(|s| s.reconnects == 0), "nobody back before 3 s: {:?}", report.timeline);
}
