//! Admission by expected wait: the queue is bounded by time, not only by count.
//!
//! A count bound alone lets an overloaded server admit calls it will answer seconds
//! later (256 faces held 5 s of CPU work on 2 cores), after most callers have given up.
//! As Triton's queue policy does, a call is refused at once when its expected wait
//! exceeds the configured bound or its own deadline, and a face that has waited past
//! the bound anyway (the estimate was wrong) is answered with an error, not run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Weight of the newest batch in the running mean of inference time per face.
const SMOOTHING: f64 = 0.2;

/// Running mean of the model time one face takes on one instance, measured on the
/// batches the instances actually run (so it follows batch size, flip-test and the
/// machine's speed). Lock-free: read by every admission, written once per batch.
#[derive(Debug)]
pub(crate) struct ServiceTime {
    /// f64 seconds per face as bits; 0.0 until the first batch.
    per_face_bits: AtomicU64,
}

impl ServiceTime {
    pub(crate) fn new() -> Self {
        Self {
            per_face_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(crate) fn record(&self, faces: usize, took: Duration) {
        if faces == 0 {
            return;
        }
        let sample = took.as_secs_f64() / faces as f64;
        // A lost update between two instances only delays the mean by one sample.
        let old = f64::from_bits(self.per_face_bits.load(Ordering::Relaxed));
        let new = if old == 0.0 {
            sample
        } else {
            old + SMOOTHING * (sample - old)
        };
        self.per_face_bits.store(new.to_bits(), Ordering::Relaxed);
    }

    /// Seconds per face on one instance; `None` before any batch has run.
    pub(crate) fn per_face(&self) -> Option<f64> {
        let v = f64::from_bits(self.per_face_bits.load(Ordering::Relaxed));
        (v > 0.0).then_some(v)
    }
}

/// Whole milliseconds, for error messages.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a call is refused before it is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The expected wait exceeds the server's bound.
    OverBound { expected: Duration, bound: Duration },
    /// The expected wait exceeds what is left of the call's deadline.
    OverDeadline {
        expected: Duration,
        deadline: Duration,
    },
}

/// How long a call waits before its faces start to run: the work of the `ahead` faces
/// queued or announced before it, on `instances` model instances that each take
/// `per_face` seconds a face. The call's own faces are not counted, so that a large
/// request on an idle server is never refused.
pub(crate) fn expected_wait(ahead: usize, instances: usize, per_face: f64) -> Duration {
    let work = ahead as f64 * per_face / instances.max(1) as f64;
    Duration::from_secs_f64(work.max(0.0))
}

/// Decides whether a call may join the queue. `bound` zero means no time bound.
pub(crate) fn check(
    expected: Duration,
    bound: Duration,
    deadline: Option<Duration>,
) -> Result<(), Refusal> {
    if !bound.is_zero() && expected > bound {
        return Err(Refusal::OverBound { expected, bound });
    }
    match deadline {
        Some(deadline) if expected > deadline => Err(Refusal::OverDeadline { expected, deadline }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_starts_at_the_first_batch_and_follows_later_ones() {
        let t = ServiceTime::new();
        assert_eq!(t.per_face(), None);
        t.record(0, Duration::from_secs(1));
        assert_eq!(t.per_face(), None, "an empty batch says nothing");
        t.record(4, Duration::from_millis(80));
        assert!((t.per_face().unwrap() - 0.020).abs() < 1e-9);
        t.record(1, Duration::from_millis(120));
        assert!((t.per_face().unwrap() - (0.020 + SMOOTHING * 0.100)).abs() < 1e-9);
    }

    #[test]
    fn the_wait_is_the_work_ahead_shared_by_the_instances() {
        let wait = expected_wait(32, 2, 0.020);
        assert!((wait.as_secs_f64() - 0.320).abs() < 1e-9);
        assert_eq!(expected_wait(1, 0, 0.010), Duration::from_millis(10));
        assert_eq!(
            expected_wait(0, 1, 0.5),
            Duration::ZERO,
            "an idle server admits any call"
        );
    }

    #[test]
    fn a_call_is_refused_over_the_bound_or_its_deadline() {
        let ms = Duration::from_millis;
        assert_eq!(check(ms(400), ms(500), None), Ok(()));
        assert_eq!(
            check(ms(600), ms(500), Some(ms(10_000))),
            Err(Refusal::OverBound {
                expected: ms(600),
                bound: ms(500)
            })
        );
        assert_eq!(
            check(ms(600), Duration::ZERO, None),
            Ok(()),
            "zero: no bound"
        );
        assert_eq!(
            check(ms(300), ms(500), Some(ms(200))),
            Err(Refusal::OverDeadline {
                expected: ms(300),
                deadline: ms(200)
            })
        );
    }
}
