//! Batch formation: owns the receiving end of the queue.

use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::backend::Batch;
use super::{EngineConfig, Incoming, Job};
use crate::metrics;

/// Forms batches until the queue closes. A batch starts when a model instance is free
/// and takes every waiting face up to `max_batch_size`. It waits up to
/// `max_queue_delay` for more only while faces are known to be on their way (being
/// decoded), so a lone request on an idle server runs at once.
pub(super) async fn run(
    mut queue: mpsc::Receiver<Job>,
    free_instances: Arc<Semaphore>,
    batches: SyncSender<Batch>,
    incoming: Arc<Incoming>,
    config: EngineConfig,
) {
    let max = config.max_batch_size;
    loop {
        let Ok(instance) = free_instances.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut jobs = Vec::with_capacity(max);
        admit(first, &mut jobs);
        drain(&mut queue, &mut jobs, max);

        if jobs.len() < max && !config.max_queue_delay.is_zero() {
            let until = Instant::now() + config.max_queue_delay;
            while jobs.len() < max && incoming.0.load(Ordering::Acquire) > 0 {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(job)) => {
                        admit(job, &mut jobs);
                        drain(&mut queue, &mut jobs, max);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        metrics::queue_depth(queue.len());
        if jobs.is_empty() {
            continue;
        }
        // Never blocks: the channel holds one batch per instance and we hold a permit.
        if batches.send(Batch { jobs, instance }).is_err() {
            return;
        }
    }
}

fn drain(queue: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize) {
    while jobs.len() < max {
        match queue.try_recv() {
            Ok(job) => admit(job, jobs),
            Err(_) => break,
        }
    }
}

/// Keeps the job unless its caller has gone.
fn admit(job: Job, jobs: &mut Vec<Job>) {
    if job.abandoned() {
        metrics::job_dropped();
        return;
    }
    metrics::queue_wait(job.enqueued_at.elapsed());
    jobs.push(job);
}
