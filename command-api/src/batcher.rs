//! Group commit, generically: requests queue to a few writer tasks, each
//! writer takes whatever is waiting (no timer) and handles it as one batch,
//! then answers every caller. A key picks the writer, so requests with the
//! same key are handled in arrival order.
//!
//! Each batcher reports, under its name: how long requests wait for their
//! batch, how large batches are, and how long a batch takes to handle.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_common::ApiError;
use duet_common::metrics::{Metrics, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;
/// A request, when it was queued, and where its outcome goes.
type Queued<Req, Resp> = (Req, Instant, Reply<Resp>);

/// A writer: turns a batch into one outcome per request, in order. It is
/// owned by its task, so it may keep state between batches (a connection).
pub trait BatchHandler: Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;

    fn handle(&mut self, batch: &[Self::Request]) -> impl Future<Output = Vec<Result<Self::Response, ApiError>>> + Send;
}

/// Handle to the writers. Cheap to clone; writers stop once every handle is
/// dropped and their queues are drained.
pub struct Batcher<Req, Resp> {
    writers: Arc<[mpsc::Sender<Queued<Req, Resp>>]>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher { writers: self.writers.clone() }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts one task per handler; `name` labels its metrics. A writer
    /// starts a batch at most once per `spacing` (zero: whenever the last
    /// one is done); meanwhile requests queue up for it, so a busy writer
    /// makes fewer, larger batches, and an idle one takes a request at once.
    pub fn start<H>(
        name: &'static str,
        metrics: &BatchFamilies,
        handlers: impl IntoIterator<Item = H>,
        max_batch: usize,
        spacing: Duration,
    ) -> Self
    where
        H: BatchHandler<Request = Req, Response = Resp>,
    {
        let metrics = BatchMetrics::of(name, metrics);
        let writers: Arc<[_]> = handlers
            .into_iter()
            .map(|mut handler| {
                let (tx, mut rx) = mpsc::channel::<Queued<Req, Resp>>(max_batch * 4);
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(max_batch);
                    while rx.recv_many(&mut batch, max_batch).await > 0 {
                        let started = Instant::now();
                        metrics.size.observe(batch.len() as f64);
                        let (requests, replies): (Vec<_>, Vec<_>) = batch
                            .drain(..)
                            .map(|(request, queued, reply)| {
                                metrics.wait.observe(started.duration_since(queued).as_secs_f64());
                                (request, reply)
                            })
                            .unzip();
                        let outcomes = handler.handle(&requests).await;
                        metrics.handle.observe(started.elapsed().as_secs_f64());
                        debug_assert_eq!(outcomes.len(), replies.len());
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            // The caller may be gone; what was committed stays committed.
                            let _ = reply.send(outcome);
                        }
                        if !spacing.is_zero() {
                            tokio::time::sleep_until((started + spacing).into()).await;
                        }
                    }
                });
                tx
            })
            .collect();
        assert!(!writers.is_empty(), "a batcher needs at least one writer");
        Batcher { writers }
    }

    /// Queues a request on the writer for `key` and waits for its outcome.
    pub async fn submit(&self, key: impl Hash, request: Req) -> Result<Resp, ApiError> {
        self.enqueue(key, request).await?.await
    }

    /// Queues a request on the writer for `key` (waiting only while that
    /// queue is full) and returns its outcome to come. Requests queued one
    /// after another with the same key are handled in that order, whether or
    /// not the caller waits for each outcome before queuing the next.
    pub async fn enqueue(&self, key: impl Hash, request: Req) -> Result<Outcome<Resp>, ApiError> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let writer = &self.writers[(hasher.finish() % self.writers.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        writer.send((request, Instant::now(), reply)).await.map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
        Ok(Outcome(answer))
    }
}

/// The outcome of a queued request, once its batch is handled.
pub struct Outcome<Resp>(oneshot::Receiver<Result<Resp, ApiError>>);

impl<Resp> Future for Outcome<Resp> {
    type Output = Result<Resp, ApiError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(ApiError::Internal(anyhow::anyhow!("batch writer stopped")))))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatcherLabel {
    batcher: &'static str,
}

/// The batchers' metric families, registered once per process.
#[derive(Clone)]
pub struct BatchFamilies {
    wait: Family<BatcherLabel, Histogram>,
    size: Family<BatcherLabel, Histogram>,
    handle: Family<BatcherLabel, Histogram>,
    splits: Family<BatcherLabel, Counter>,
}

impl BatchFamilies {
    pub fn register(metrics: &Metrics) -> Self {
        let families = BatchFamilies {
            wait: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            size: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 10))),
            handle: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            splits: Family::default(),
        };
        metrics.register("batch_wait_seconds", "Time a request waits for its group-commit batch to start", families.wait.clone());
        metrics.register("batch_size", "Requests per group-commit batch", families.size.clone());
        metrics.register("batch_seconds", "Time a group-commit writer takes for one batch", families.handle.clone());
        metrics.register(
            "batch_splits",
            "Group-commit batches that failed whole and were run one request at a time",
            families.splits.clone(),
        );
        families
    }

    /// The counter of `name`'s batches that were split into single requests.
    pub fn splits(&self, name: &'static str) -> Counter {
        self.splits.get_or_create(&BatcherLabel { batcher: name }).clone()
    }
}

/// One batcher's series.
#[derive(Clone)]
struct BatchMetrics {
    wait: Histogram,
    size: Histogram,
    handle: Histogram,
}

impl BatchMetrics {
    fn of(name: &'static str, families: &BatchFamilies) -> Self {
        let label = BatcherLabel { batcher: name };
        BatchMetrics {
            wait: families.wait.get_or_create(&label).clone(),
            size: families.size.get_or_create(&label).clone(),
            handle: families.handle.get_or_create(&label).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Semaphore;

    use super::*;

    /// Fails every request of a batch that holds it, as a failed transaction would.
    const POISON: u32 = 999;

    /// The batches the writers saw, in order: which writer, and its requests.
    type Seen = Arc<Mutex<Vec<(usize, Vec<u32>)>>>;

    /// A writer that records its batches, answers `request × 10`, and holds
    /// each batch until the test lets it go (so requests can queue behind it).
    struct Recorder {
        writer: usize,
        batches: Seen,
        started: mpsc::UnboundedSender<()>,
        gate: Arc<Semaphore>,
    }

    impl BatchHandler for Recorder {
        type Request = u32;
        type Response = u32;

        async fn handle(&mut self, batch: &[u32]) -> Vec<Result<u32, ApiError>> {
            self.batches.lock().unwrap().push((self.writer, batch.to_vec()));
            let _ = self.started.send(());
            self.gate.acquire().await.unwrap().forget();
            if batch.contains(&POISON) {
                return batch.iter().map(|_| Err(ApiError::Unavailable("the batch failed".into()))).collect();
            }
            batch.iter().map(|r| Ok(r * 10)).collect()
        }
    }

    struct Fixture {
        batcher: Batcher<u32, u32>,
        batches: Seen,
        started: mpsc::UnboundedReceiver<()>,
        gate: Arc<Semaphore>,
    }

    impl Fixture {
        fn new(writers: usize, max_batch: usize) -> Self {
            let batches = Arc::new(Mutex::new(Vec::new()));
            let (started_tx, started) = mpsc::unbounded_channel();
            let gate = Arc::new(Semaphore::new(0));
            let handlers: Vec<_> = (0..writers)
                .map(|writer| Recorder { writer, batches: batches.clone(), started: started_tx.clone(), gate: gate.clone() })
                .collect();
            let families = BatchFamilies::register(&Metrics::new());
            let batcher = Batcher::start("test", &families, handlers, max_batch, Duration::ZERO);
            Fixture { batcher, batches, started, gate }
        }

        /// Queues `first` and waits until its writer holds it, then queues
        /// `rest` behind it (same key), and lets every batch go.
        async fn queued_behind_a_busy_writer(&mut self, first: u32, rest: &[u32]) -> Vec<Result<u32, ApiError>> {
            let mut outcomes = vec![self.batcher.enqueue("key", first).await.unwrap()];
            self.started.recv().await.unwrap();
            for request in rest {
                outcomes.push(self.batcher.enqueue("key", *request).await.unwrap());
            }
            self.gate.add_permits(Semaphore::MAX_PERMITS);
            let mut answers = Vec::new();
            for outcome in outcomes {
                answers.push(outcome.await);
            }
            answers
        }

        fn batches(&self) -> Vec<Vec<u32>> {
            self.batches.lock().unwrap().iter().map(|(_, batch)| batch.clone()).collect()
        }
    }

    fn answers(outcomes: &[Result<u32, ApiError>]) -> Vec<Option<u32>> {
        outcomes.iter().map(|o| o.as_ref().ok().copied()).collect()
    }

    #[tokio::test]
    async fn requests_queued_while_the_writer_is_busy_form_one_batch_in_arrival_order() {
        let mut f = Fixture::new(1, 100);
        let outcomes = f.queued_behind_a_busy_writer(1, &[2, 3, 4, 5]).await;
        assert_eq!(f.batches(), vec![vec![1], vec![2, 3, 4, 5]]);
        assert_eq!(answers(&outcomes), vec![Some(10), Some(20), Some(30), Some(40), Some(50)], "each caller gets its own answer");
    }

    #[tokio::test]
    async fn an_idle_writer_takes_a_request_at_once() {
        let f = Fixture::new(1, 100);
        f.gate.add_permits(Semaphore::MAX_PERMITS);
        assert_eq!(f.batcher.submit("key", 7).await.unwrap(), 70);
        assert_eq!(f.batcher.submit("key", 8).await.unwrap(), 80);
        assert_eq!(f.batches(), vec![vec![7], vec![8]]);
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch_requests() {
        let mut f = Fixture::new(1, 3);
        let outcomes = f.queued_behind_a_busy_writer(0, &[1, 2, 3, 4, 5, 6, 7]).await;
        assert_eq!(f.batches(), vec![vec![0], vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
        assert!(outcomes.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_own_requests_only() {
        let mut f = Fixture::new(1, 3);
        let outcomes = f.queued_behind_a_busy_writer(1, &[2, POISON, 3, 4]).await;
        assert_eq!(f.batches(), vec![vec![1], vec![2, POISON, 3], vec![4]]);
        assert_eq!(answers(&outcomes), vec![Some(10), None, None, None, Some(40)]);
        assert!(matches!(outcomes[1], Err(ApiError::Unavailable(_))), "{:?}", outcomes[1]);
    }

    #[tokio::test]
    async fn requests_with_one_key_all_go_to_one_writer() {
        let f = Fixture::new(4, 100);
        f.gate.add_permits(Semaphore::MAX_PERMITS);
        for key in ["ann", "bob", "cat"] {
            for request in 0..5 {
                f.batcher.submit(key, request).await.unwrap();
            }
        }
        let batches = f.batches.lock().unwrap().clone();
        for chunk in batches.chunks(5) {
            assert!(chunk.iter().all(|(writer, _)| *writer == chunk[0].0), "one key, one writer: {batches:?}");
        }
    }

    #[tokio::test]
    async fn a_request_to_a_stopped_writer_fails_instead_of_waiting_forever() {
        struct Panics;
        impl BatchHandler for Panics {
            type Request = u32;
            type Response = u32;
            async fn handle(&mut self, _: &[u32]) -> Vec<Result<u32, ApiError>> {
                panic!("the writer dies");
            }
        }
        let families = BatchFamilies::register(&Metrics::new());
        let batcher = Batcher::start("test", &families, [Panics], 10, Duration::ZERO);
        let outcome = batcher.submit("key", 1).await;
        assert!(matches!(outcome, Err(ApiError::Internal(_))), "{outcome:?}");
    }
}
