//! The dynamic batching engine between the gRPC handlers and the model.
//!
//! Handlers submit decoded face crops; each face becomes a [`Job`] in a queue bounded
//! by count ([`EngineError::QueueFull`]) and by expected wait ([`admission`]), both
//! checked at once, before any work is spent on the call. [`batcher`] forms a batch as soon
//! as a model instance is free, and [`backend`] threads, one per model instance, run
//! it and answer each job. A job whose caller has gone (deadline, cancellation) is
//! dropped before inference.

mod admission;
mod backend;
mod batcher;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};
use vargid_model::{Embedder, FaceCrop, ModelInfo};

use self::admission::{Refusal, ServiceTime};
use crate::metrics;

/// Batching parameters.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    pub queue_capacity: usize,
    /// Longest a face may wait for inference (zero: no time bound, only the count).
    pub max_queue_wait: Duration,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("inference queue is full ({capacity} faces waiting); retry with backoff")]
    QueueFull { capacity: usize },
    #[error(
        "server overloaded: the inference queue holds about {expected_ms} ms of work, \
         beyond its {bound_ms} ms bound; retry with backoff"
    )]
    Overloaded { expected_ms: u64, bound_ms: u64 },
    #[error(
        "the call's deadline ({deadline_ms} ms left) is shorter than the expected wait for \
         inference (about {expected_ms} ms); retry later or with a longer deadline"
    )]
    DeadlineTooShort { expected_ms: u64, deadline_ms: u64 },
    #[error(
        "waited {waited_ms} ms for inference, beyond the {bound_ms} ms bound; retry with backoff"
    )]
    QueueTimeout { waited_ms: u64, bound_ms: u64 },
    #[error("the inference engine has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
}

/// One face waiting for inference.
pub(crate) struct Job {
    crop: FaceCrop,
    enqueued_at: Instant,
    reply: oneshot::Sender<Result<Vec<f32>, EngineError>>,
}

impl Job {
    /// The caller dropped its request (deadline passed, cancelled, disconnected).
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Faces admitted by a handler but not yet queued (still being decoded). The batcher
/// waits for them only while this is non-zero: waiting then pays, since they will come.
#[derive(Debug, Default)]
pub(crate) struct Incoming(AtomicUsize);

/// Holds a count in [`Incoming`] until dropped.
pub struct IncomingGuard {
    incoming: Arc<Incoming>,
    n: usize,
}

impl Drop for IncomingGuard {
    fn drop(&mut self) {
        self.incoming.0.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    queue: mpsc::Sender<Job>,
    incoming: Arc<Incoming>,
    capacity: usize,
    max_batch_size: usize,
    max_queue_wait: Duration,
    instances: usize,
    service_time: Arc<ServiceTime>,
    /// Faces in formed batches not yet answered: work ahead of any new call too.
    running: Arc<AtomicUsize>,
    info: ModelInfo,
}

impl Engine {
    /// Starts one backend thread per embedder and the batching task (needs a tokio runtime).
    pub fn start(embedders: Vec<Embedder>, config: EngineConfig) -> Self {
        assert!(!embedders.is_empty(), "at least one model instance");
        let info = embedders[0].info().clone();
        let (queue, queue_rx) = mpsc::channel(config.queue_capacity);
        let incoming = Arc::new(Incoming::default());
        // One permit per model instance: a batch is formed only when one is free.
        let free_instances = Arc::new(Semaphore::new(embedders.len()));
        let answered = Arc::new(AtomicUsize::new(0));
        let instances = embedders.len();
        let service_time = Arc::new(ServiceTime::new());
        let running = Arc::new(AtomicUsize::new(0));
        let batches = backend::spawn(
            embedders,
            answered.clone(),
            service_time.clone(),
            running.clone(),
        );
        tokio::spawn(batcher::run(
            queue_rx,
            free_instances,
            batches,
            incoming.clone(),
            answered,
            running.clone(),
            config.clone(),
        ));
        Self {
            queue,
            incoming,
            capacity: config.queue_capacity,
            max_batch_size: config.max_batch_size,
            max_queue_wait: config.max_queue_wait,
            instances,
            service_time,
            running,
            info,
        }
    }

    pub fn model_info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Reserves room for `n` faces about to be submitted (they are being decoded).
    /// Fails at once when the queue, counting faces already announced, cannot take
    /// them, or when their expected wait exceeds the bound or `deadline` (what is left
    /// of the call's): an overloaded server refuses before spending any work on a call.
    pub fn incoming(
        &self,
        n: usize,
        deadline: Option<Duration>,
    ) -> Result<IncomingGuard, EngineError> {
        let queued = self.capacity - self.queue.capacity();
        let announced = self.incoming.0.fetch_add(n, Ordering::AcqRel);
        let guard = IncomingGuard {
            incoming: self.incoming.clone(),
            n,
        };
        if queued + announced + n > self.capacity {
            metrics::queue_rejected("full");
            return Err(EngineError::QueueFull {
                capacity: self.capacity,
            });
        }
        // Before the first batch the cost is unknown: only the count bound applies.
        if let Some(per_face) = self.service_time.per_face() {
            let ahead = queued + announced + self.running.load(Ordering::Acquire);
            let expected = admission::expected_wait(ahead, self.instances, per_face);
            match admission::check(expected, self.max_queue_wait, deadline) {
                Ok(()) => {}
                Err(Refusal::OverBound { expected, bound }) => {
                    metrics::queue_rejected("wait_bound");
                    return Err(EngineError::Overloaded {
                        expected_ms: admission::millis(expected),
                        bound_ms: admission::millis(bound),
                    });
                }
                Err(Refusal::OverDeadline { expected, deadline }) => {
                    metrics::queue_rejected("deadline");
                    return Err(EngineError::DeadlineTooShort {
                        expected_ms: admission::millis(expected),
                        deadline_ms: admission::millis(deadline),
                    });
                }
            }
        }
        Ok(guard)
    }

    /// Embeddings of `crops`, in order. Fails at once if the queue cannot take them all.
    /// `announced` (from [`Engine::incoming`]) is released once the faces are queued.
    pub async fn embed(
        &self,
        crops: Vec<FaceCrop>,
        announced: IncomingGuard,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut replies = Vec::with_capacity(crops.len());
        for crop in crops {
            let (reply, rx) = oneshot::channel();
            let job = Job {
                crop,
                enqueued_at: Instant::now(),
                reply,
            };
            match self.queue.try_send(job) {
                Ok(()) => replies.push(rx),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Jobs already queued are dropped by the batcher: their receivers go here.
                    metrics::queue_rejected("full");
                    return Err(EngineError::QueueFull {
                        capacity: self.capacity,
                    });
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(EngineError::Stopped),
            }
        }
        drop(announced);
        metrics::queue_depth(self.capacity - self.queue.capacity());
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            out.push(rx.await.map_err(|_| EngineError::Stopped)??);
        }
        Ok(out)
    }
}
