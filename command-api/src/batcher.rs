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
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;
/// A request, when it was queued, and where its outcome goes.
type Queued<Req, Resp> = (Req, Instant, Reply<Resp>);

/// A writer: turns a batch into one outcome per request, in order. It is
/// owned by its task, so it may keep state between batches (a connection).
pub trait Handler: Send + 'static {
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
        H: Handler<Request = Req, Response = Resp>,
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
        writer
            .send((request, Instant::now(), reply))
            .await
            .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
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
}

impl BatchFamilies {
    pub fn register(metrics: &Metrics) -> Self {
        let families = BatchFamilies {
            wait: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            size: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 10))),
            handle: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
        };
        metrics.register("batch_wait_seconds", "Time a request waits for its group-commit batch to start", families.wait.clone());
        metrics.register("batch_size", "Requests per group-commit batch", families.size.clone());
        metrics.register("batch_seconds", "Time a group-commit writer takes for one batch", families.handle.clone());
        families
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
