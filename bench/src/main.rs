//! Benchmarks (not tests), each printing a Markdown report for docs/benchmarks.md:
//! - `vargid-bench batching`: raw ONNX Runtime vs the service's dynamic batching;
//! - `vargid-bench gallery`: search latency and recall, flat vs approximate, and
//!   durable enrollments per second;
//! - `vargid-bench lfw`: LFW View 2 embeddings through a running service, for
//!   `python -m vargface.evaluate --embeddings`;
//! - `vargid-bench baseline`: vargid against a per-request Python grpcio + ONNX
//!   Runtime server, aligned faces and whole photos;
//! - `vargid-bench raw`: the model alone on one runtime library (a child process of
//!   `baseline`, which compares libraries);
//! - `vargid-bench overload`: goodput, admitted latency and recovery far past
//!   capacity, against the same generator at concurrency 16;
//! - `vargid-bench replicas`: replicas sharing a PostgreSQL gallery record: Identify
//!   throughput with 1, 2 and 3 replicas, and replication lag under enrollment load.

mod baseline;
mod batching;
mod gallery;
mod lfw;
mod load;
mod overload;
mod raw;
mod replicas;
mod service;

fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("batching") => batching::run(argv.collect()),
        Some("gallery") => gallery::run(argv.collect()),
        Some("lfw") => lfw::run(argv.collect()),
        Some("overload") => overload::run(argv.collect()),
        Some("baseline") => baseline::run(argv.collect()),
        Some("raw") => raw::run(argv.collect()),
        Some("replicas") => replicas::run(argv.collect()),
        _ => anyhow::bail!(
            "usage: vargid-bench batching|baseline|gallery|lfw|overload|raw|replicas [options]"
        ),
    }
}
