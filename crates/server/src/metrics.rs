//! Prometheus metrics: names, units and buckets in one place, and the exporter.
//!
//! Rates (faces per second, requests per second) come from the counters with
//! PromQL's `rate()`.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "vargid_requests_total";
const REQUEST_SECONDS: &str = "vargid_request_duration_seconds";
const QUEUE_DEPTH: &str = "vargid_queue_depth";
const QUEUE_WAIT_SECONDS: &str = "vargid_queue_wait_seconds";
const QUEUE_REJECTED: &str = "vargid_queue_rejected_total";
const JOBS_DROPPED: &str = "vargid_abandoned_faces_total";
const JOBS_TIMED_OUT: &str = "vargid_queue_timed_out_faces_total";
const BATCH_SIZE: &str = "vargid_batch_size";
const INFERENCE_SECONDS: &str = "vargid_inference_duration_seconds";
const FACES_EMBEDDED: &str = "vargid_faces_embedded_total";
const DETECTION_SECONDS: &str = "vargid_detection_duration_seconds";
const FACES_DETECTED: &str = "vargid_faces_detected_total";
const FACES_REJECTED: &str = "vargid_faces_rejected_total";
const GALLERY_FACES: &str = "vargid_gallery_faces";
const GALLERY_IDENTITIES: &str = "vargid_gallery_identities";
const IDENTIFY_TOP1_SCORE: &str = "vargid_identify_top1_score";
const IDENTIFY_SEARCHES: &str = "vargid_identify_searches_total";
const REPLICATION_LAG_SECONDS: &str = "vargid_replication_lag_seconds";
const REPLICATION_APPLIED: &str = "vargid_replication_applied_sequence";

/// Cosine buckets of Identify's top-1 score: finer where thresholds usually sit.
const SCORE_BUCKETS: [f64; 14] = [
    0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9,
];

/// Installs the process-wide recorder; the handle renders the text exposition format.
pub fn install(max_batch_size: usize) -> Result<PrometheusHandle, BuildError> {
    let latency = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    ];
    let mut sizes = Vec::new();
    let mut b = 1usize;
    while b < max_batch_size {
        sizes.push(b as f64);
        b *= 2;
    }
    sizes.push(max_batch_size as f64);
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes)?
        .set_buckets_for_metric(Matcher::Full(IDENTIFY_TOP1_SCORE.into()), &SCORE_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS, "gRPC requests by method and status code");
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "gRPC request latency by method"
    );
    describe_gauge!(QUEUE_DEPTH, "Faces waiting for inference");
    describe_histogram!(
        QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "Time a face waited in the queue"
    );
    describe_counter!(
        QUEUE_REJECTED,
        "Requests refused before queueing, by reason: full (count bound), wait_bound \
         (expected wait over batching.max_queue_wait_ms), deadline (over the call's deadline)"
    );
    describe_counter!(
        JOBS_TIMED_OUT,
        "Faces answered with an error because they waited past batching.max_queue_wait_ms"
    );
    describe_counter!(
        JOBS_DROPPED,
        "Faces dropped before inference because the caller had gone"
    );
    describe_histogram!(BATCH_SIZE, "Faces per inference batch");
    describe_histogram!(INFERENCE_SECONDS, Unit::Seconds, "Model run time per batch");
    describe_counter!(FACES_EMBEDDED, "Faces run through the model");
    describe_histogram!(
        DETECTION_SECONDS,
        Unit::Seconds,
        "Face detection time per photo"
    );
    describe_counter!(FACES_DETECTED, "Faces the detector found in photos");
    describe_counter!(
        FACES_REJECTED,
        "Detected faces refused by the quality gate, by reason"
    );
    describe_gauge!(GALLERY_FACES, "Face templates in the gallery");
    describe_gauge!(GALLERY_IDENTITIES, "Identities in the gallery");
    describe_histogram!(
        IDENTIFY_TOP1_SCORE,
        "Identify: the best candidate's cosine score per searched face, by gallery"
    );
    describe_counter!(
        IDENTIFY_SEARCHES,
        "Identify searches per face by gallery and result (match, no_match, empty_gallery)"
    );
    describe_histogram!(
        REPLICATION_LAG_SECONDS,
        Unit::Seconds,
        "Shared gallery record (PostgreSQL): from a change's commit on any replica to this \
         replica's indexes reflecting it (the writer's and this replica's clocks)"
    );
    describe_gauge!(
        REPLICATION_APPLIED,
        "Shared gallery record (PostgreSQL): the last change of its log this replica applied"
    );
}

pub fn request(method: &'static str, code: tonic::Code, elapsed: Duration) {
    counter!(REQUESTS, "method" => method, "code" => code_name(code)).increment(1);
    histogram!(REQUEST_SECONDS, "method" => method).record(elapsed.as_secs_f64());
}

pub fn queue_depth(faces: usize) {
    gauge!(QUEUE_DEPTH).set(faces as f64);
}

pub fn queue_wait(waited: Duration) {
    histogram!(QUEUE_WAIT_SECONDS).record(waited.as_secs_f64());
}

pub fn queue_rejected(reason: &'static str) {
    counter!(QUEUE_REJECTED, "reason" => reason).increment(1);
}

pub fn job_timed_out() {
    counter!(JOBS_TIMED_OUT).increment(1);
}

pub fn job_dropped() {
    counter!(JOBS_DROPPED).increment(1);
}

pub fn batch_done(faces: usize, took: Duration) {
    histogram!(BATCH_SIZE).record(faces as f64);
    histogram!(INFERENCE_SECONDS).record(took.as_secs_f64());
    counter!(FACES_EMBEDDED).increment(faces as u64);
}

pub fn detection(took: Duration, faces: usize) {
    histogram!(DETECTION_SECONDS).record(took.as_secs_f64());
    counter!(FACES_DETECTED).increment(faces as u64);
}

pub fn face_rejected(reason: &crate::faces::Rejection) {
    use crate::faces::Rejection;
    let reason = match reason {
        Rejection::TooSmall { .. } => "too_small",
        Rejection::LowScore { .. } => "low_detector_score",
        Rejection::Unalignable => "unalignable",
    };
    counter!(FACES_REJECTED, "reason" => reason).increment(1);
}

/// This replica applied change `seq` of the shared log, committed at `committed_unix_ms`.
pub fn replication_applied(seq: i64, committed_unix_ms: i64) {
    let lag_ms = crate::clock::now_unix_ms()
        .saturating_sub(committed_unix_ms)
        .max(0);
    histogram!(REPLICATION_LAG_SECONDS).record(lag_ms as f64 / 1e3);
    gauge!(REPLICATION_APPLIED).set(seq as f64);
}

pub fn gallery_size(faces: usize, identities: usize) {
    gauge!(GALLERY_FACES).set(faces as f64);
    gauge!(GALLERY_IDENTITIES).set(identities as f64);
}

/// One Identify search of `gallery` (see `match_scores`).
pub fn identify_search(gallery: &str, top1: Option<f32>, matched: bool) {
    let result = match (top1, matched) {
        (None, _) => "empty_gallery",
        (Some(_), true) => "match",
        (Some(_), false) => "no_match",
    };
    counter!(IDENTIFY_SEARCHES, "gallery" => gallery.to_string(), "result" => result).increment(1);
    if let Some(score) = top1 {
        histogram!(IDENTIFY_TOP1_SCORE, "gallery" => gallery.to_string()).record(f64::from(score));
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
