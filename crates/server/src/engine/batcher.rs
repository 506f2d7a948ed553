//! Batch formation: owns the receiving end of the queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::admission::millis;
use super::backend::Batch;
use super::{EngineConfig, EngineError, Incoming, Job};
use crate::metrics;

/// Forms batches until the queue closes. A batch starts when a model instance is free
/// and takes every waiting face up to `max_batch_size`. It waits up to
/// `max_queue_delay` for more only while more are known or expected to be on their way:
/// faces being decoded, or the callers the last batch just answered, who under
/// closed-loop load send again within a few milliseconds (without that wait, callers
/// split into cohorts that alternate in half-size batches). A lone request on an idle
/// server runs at once.
pub(super) async fn run(
    mut queue: mpsc::Receiver<Job>,
    free_instances: Arc<Semaphore>,
    batches: SyncSender<Batch>,
    incoming: Arc<Incoming>,
    answered: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    config: EngineConfig,
) {
    let max = config.max_batch_size;
    let delay = config.max_queue_delay;
    loop {
        let Ok(instance) = free_instances.clone().acquire_owned().await else {
            return;
        };
        let freed_at = Instant::now();
        let just_answered = answered.swap(0, Ordering::AcqRel);
        let backlog = queue.len();
        let Some(first) = queue.recv().await else {
            return;
        };
        let first_at = Instant::now();
        let mut jobs = Vec::with_capacity(max);
        let bound = config.max_queue_wait;
        admit(first, &mut jobs, bound);
        drain(&mut queue, &mut jobs, max, bound);

        // Callers answered long before this request came are not about to return.
        let returning = if first_at - freed_at <= delay {
            just_answered
        } else {
            0
        };
        let expected = max.min(backlog + returning);
        if jobs.len() < max && !delay.is_zero() {
            let until = first_at + delay;
            while jobs.len() < max
                && (jobs.len() < expected || incoming.0.load(Ordering::Acquire) > 0)
            {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(job)) => {
                        admit(job, &mut jobs, bound);
                        drain(&mut queue, &mut jobs, max, bound);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        metrics::queue_depth(queue.len());
        if jobs.is_empty() {
            continue;
        }
        // Counted until the backend has answered the batch.
        running.fetch_add(jobs.len(), Ordering::AcqRel);
        // Never blocks: the channel holds one batch per instance and we hold a permit.
        if batches.send(Batch { jobs, instance }).is_err() {
            return;
        }
    }
}

fn drain(queue: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize, bound: Duration) {
    while jobs.len() < max {
        match queue.try_recv() {
            Ok(job) => admit(job, jobs, bound),
            Err(_) => break,
        }
    }
}

/// Keeps the job unless its caller has gone, or it has waited past `bound` (non-zero):
/// then its caller is answered at once, so that no admitted call waits longer than the
/// bound plus one batch even when admission's estimate was wrong.
fn admit(job: Job, jobs: &mut Vec<Job>, bound: Duration) {
    if job.abandoned() {
        metrics::job_dropped();
        return;
    }
    let waited = job.enqueued_at.elapsed();
    metrics::queue_wait(waited);
    if !bound.is_zero() && waited > bound {
        metrics::job_timed_out();
        let _ = job.reply.send(Err(EngineError::QueueTimeout {
            waited_ms: millis(waited),
            bound_ms: millis(bound),
        }));
        return;
    }
    jobs.push(job);
}
