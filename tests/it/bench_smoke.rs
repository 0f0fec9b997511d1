//! A smoke-sized `duet-bench chat` run against a real node: asserts only the
//! checker's verdict (nothing acked lost, nothing unexpected, no reordering),
//! never a time. The real numbers live in docs/benchmarks.md.

use duet_bench::chat::{self, ChatArgs};
use duet_bench::pacer::Schedule;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chat_benchmark_passes_the_consistency_checker() {
    let app = TestApp::spawn().await;
    let args = ChatArgs {
        url: format!("ws://{}/ws", app.addr),
        http: format!("http://{}", app.addr),
        schedule: Schedule { pairs: 4, rate: 100.0, duration: 2 },
        json: false,
        drain_timeout: 20,
    };
    let clean = chat::run(args).await.expect("the benchmark runs");
    assert!(clean, "the checker found lost, unexpected or reordered messages (see the report above)");
}
