//! Group commit, generically: requests queue to a few writer tasks, each
//! writer takes whatever is waiting (no timer) and handles it as one batch,
//! then answers every caller. A key picks the writer, so requests with the
//! same key are handled in arrival order.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use duet_common::ApiError;
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

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
    writers: Arc<[mpsc::Sender<(Req, Reply<Resp>)>]>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher { writers: self.writers.clone() }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts one task per handler.
    pub fn start<H>(handlers: impl IntoIterator<Item = H>, max_batch: usize) -> Self
    where
        H: Handler<Request = Req, Response = Resp>,
    {
        let writers: Arc<[_]> = handlers
            .into_iter()
            .map(|mut handler| {
                let (tx, mut rx) = mpsc::channel::<(Req, Reply<Resp>)>(max_batch * 4);
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(max_batch);
                    while rx.recv_many(&mut batch, max_batch).await > 0 {
                        let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                        let outcomes = handler.handle(&requests).await;
                        debug_assert_eq!(outcomes.len(), replies.len());
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            // The caller may be gone; what was committed stays committed.
                            let _ = reply.send(outcome);
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
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let writer = &self.writers[(hasher.finish() % self.writers.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        writer
            .send((request, reply))
            .await
            .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
        answer.await.map_err(|_| ApiError::Internal(anyhow::anyhow!("batch writer stopped")))?
    }
}
