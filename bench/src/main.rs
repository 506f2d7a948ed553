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

/// Benchmarks of vargid; each prints a Markdown report (see docs/benchmarks.md).
#[derive(clap::Parser)]
#[command(name = "vargid-bench")]
enum Command {
    Batching(batching::Args),
    Baseline(baseline::Args),
    Gallery(gallery::Args),
    Lfw(lfw::Args),
    Overload(overload::Args),
    Raw(raw::Args),
    Replicas(replicas::Args),
}

fn main() -> anyhow::Result<()> {
    match <Command as clap::Parser>::parse() {
        Command::Batching(args) => batching::run(args),
        Command::Baseline(args) => baseline::run(args),
        Command::Gallery(args) => gallery::run(args),
        Command::Lfw(args) => lfw::run(args),
        Command::Overload(args) => overload::run(args),
        Command::Raw(args) => raw::run(args),
        Command::Replicas(args) => replicas::run(args),
    }
}
