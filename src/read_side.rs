//! The read side's own threads.
//!
//! The outbox relay, the projector, the push triggers and the job workers
//! may trail the write path: live delivery never waits for them. In a
//! process that also serves sends, they would otherwise share the worker
//! threads (a send's task queued behind a projection batch) and its CPU
//! priority (on busy cores, PostgreSQL and the gateway waiting for a turn
//! while events are folded). So they run on a runtime of their own whose
//! threads have a lower priority (`DUET_READ_SIDE_NICE`, Linux's nice is a
//! per-thread attribute). The runtime is made once per process and lives
//! as long as it: connections it opens stay usable by the rest of the
//! process, and a node stopped or dropped stops its read-side tasks through
//! their handles, as it always did.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

/// Where the read side runs.
pub struct ReadSide(Option<Handle>);

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

impl ReadSide {
    /// The read side's runtime at `nice` (the first call in a process sets
    /// it), or the caller's own runtime for 0.
    pub fn new(nice: i32) -> anyhow::Result<Self> {
        if nice == 0 {
            return Ok(ReadSide(None));
        }
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("duet-read-side")
                .on_thread_start(move || {
                    if let Err(e) = rustix::process::setpriority_process(None, nice) {
                        tracing::warn!(error = %e, nice, "could not lower a read-side thread's priority");
                    }
                })
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        match runtime {
            Ok(runtime) => Ok(ReadSide(Some(runtime.handle().clone()))),
            Err(e) => anyhow::bail!("Failed to start the read side's threads: {e}"),
        }
    }

    /// Runs `task` on the read side and waits for it. Dropping the returned
    /// future stops the task, as dropping `task` itself would.
    pub async fn run<T: Send + 'static>(&self, task: impl Future<Output = T> + Send + 'static) -> T {
        let Some(handle) = &self.0 else {
            return task.await;
        };
        let mut task = AbortOnDrop(handle.spawn(task));
        match (&mut task.0).await {
            Ok(output) => output,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a read-side task was cancelled: {e}"),
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, from /proc (field 19 of its stat).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn read_side_tasks_run_at_the_lower_priority_and_the_rest_does_not() {
        let here = own_nice();
        assert_eq!(ReadSide::new(0).unwrap().run(async { own_nice() }).await, here);
        assert_eq!(ReadSide::new(7).unwrap().run(async { own_nice() }).await, 7);
        assert_eq!(own_nice(), here);
    }
}
