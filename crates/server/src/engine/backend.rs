//! Model instances: one OS thread per ONNX Runtime session, so inference never runs
//! on (or blocks) the async runtime's workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use vargid_model::{Embedder, FaceCrop};

use super::admission::ServiceTime;
use super::{EngineError, Job};
use crate::metrics;

/// A formed batch and the permit of the instance that will run it.
pub(super) struct Batch {
    pub jobs: Vec<Job>,
    pub instance: OwnedSemaphorePermit,
}

/// Starts the instance threads; returns where to send batches.
/// `answered` counts the callers answered by each finished batch, for the batcher;
/// `service_time` learns what a face costs, for admission.
pub(super) fn spawn(
    embedders: Vec<Embedder>,
    answered: Arc<AtomicUsize>,
    service_time: Arc<ServiceTime>,
    running: Arc<AtomicUsize>,
) -> SyncSender<Batch> {
    let (tx, rx) = sync_channel::<Batch>(embedders.len());
    let rx = Arc::new(Mutex::new(rx));
    for (i, embedder) in embedders.into_iter().enumerate() {
        let rx = rx.clone();
        let answered = answered.clone();
        let service_time = service_time.clone();
        let running = running.clone();
        std::thread::Builder::new()
            .name(format!("vargid-model-{i}"))
            .spawn(move || run_instance(embedder, rx, answered, service_time, running))
            .expect("spawning a model thread at start-up");
    }
    tx
}

fn run_instance(
    mut embedder: Embedder,
    batches: Arc<Mutex<Receiver<Batch>>>,
    answered: Arc<AtomicUsize>,
    service_time: Arc<ServiceTime>,
    running: Arc<AtomicUsize>,
) {
    loop {
        let next = batches.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(Batch { mut jobs, instance }) = next else {
            return;
        };
        // The batcher counted these faces as running when it formed the batch.
        let formed = RunningFaces {
            running: &running,
            n: jobs.len(),
        };
        // Callers may have gone while the batch waited for this thread.
        jobs.retain(|job| {
            let keep = !job.abandoned();
            if !keep {
                metrics::job_dropped();
            }
            keep
        });
        if jobs.is_empty() {
            continue;
        }
        let crops: Vec<&FaceCrop> = jobs.iter().map(|j| &j.crop).collect();
        let started = Instant::now();
        let result = embedder.embed(&crops);
        let took = started.elapsed();
        metrics::batch_done(jobs.len(), took);
        if result.is_ok() {
            service_time.record(jobs.len(), took);
        }
        // The instance is free: the batcher may form the next batch while we reply.
        answered.fetch_add(jobs.len(), Ordering::AcqRel);
        drop(instance);
        // No longer work ahead of anyone: off the count before a caller, answered, can
        // send its next call (admission would otherwise still see this batch).
        drop(formed);
        match result {
            Ok(embeddings) => {
                for (job, embedding) in jobs.into_iter().zip(embeddings) {
                    let _ = job.reply.send(Ok(embedding));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = jobs.len(), "inference failed");
                let err = EngineError::Inference(e.to_string());
                for job in jobs {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Takes a formed batch's faces off the running count when the batch is done with.
struct RunningFaces<'a> {
    running: &'a AtomicUsize,
    n: usize,
}

impl Drop for RunningFaces<'_> {
    fn drop(&mut self) {
        self.running.fetch_sub(self.n, Ordering::AcqRel);
    }
}
