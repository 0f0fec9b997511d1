use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

fn components() -> Arc<Components> {
    Components::new(&Metrics::new())
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_max_and_resets() {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let pauses: Vec<Duration> = (0..10).map(|_| backoff.next_pause()).collect();
    for (i, pause) in pauses.iter().enumerate() {
        let step = (Duration::from_millis(100) * 2u32.pow(i as u32)).min(Duration::from_secs(5));
        assert!(*pause >= step / 2 && *pause <= step, "pause {i}: {pause:?} within half of {step:?}");
    }
    backoff.reset();
    assert!(backoff.next_pause() <= Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_failing_component_is_restarted_counted_and_healthy_after_progress() {
    let components = components();
    let health = components.register("relay", true);
    let stop = CancellationToken::new();
    let runs = Arc::new(AtomicU32::new(0));
    let supervisor = {
        let (stop, runs) = (stop.clone(), runs.clone());
        tokio::spawn(supervise(health, stop.clone(), move |health| {
            let (stop, runs) = (stop.clone(), runs.clone());
            async move {
                match runs.fetch_add(1, Ordering::SeqCst) {
                    0 => anyhow::bail!("the database went away"),
                    1 => panic!("a bug"),
                    2 => Ok(()),
                    _ => {
                        health.ok();
                        stop.cancelled().await;
                        Ok(())
                    }
                }
            }
        }))
    };
    while runs.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relay = components.report()["relay"].clone();
    assert_eq!((relay.healthy, relay.restarts, relay.down_for), (true, 3, Duration::ZERO));
    stop.cancel();
    supervisor.await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 4, "not restarted after the stop");
}

#[tokio::test(start_paused = true)]
async fn a_component_failing_without_progress_stays_unhealthy_and_backs_off() {
    let components = components();
    let health = components.register("push-worker", false);
    let stop = CancellationToken::new();
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let supervisor = tokio::spawn(supervise(health, stop.clone(), move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { anyhow::bail!("still down") }
    }));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let worker = components.report()["push-worker"].clone();
    assert!(!worker.healthy);
    assert!(worker.down_for >= Duration::from_secs(9), "{:?}", worker.down_for);
    // 100 ms doubling to 3 s (each pause at least half its step): a handful
    // of restarts in 10 s, not a busy loop.
    let restarts = runs.load(Ordering::SeqCst);
    assert!((4..=12).contains(&restarts), "{restarts} runs");
    assert_eq!(worker.restarts, u64::from(restarts));
    stop.cancel();
    supervisor.await.unwrap();
}
