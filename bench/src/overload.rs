//! `vargid-bench overload`: what a caller gets far past capacity. In one run, with one
//! generator (callers over the same HTTP/2 connections, as ghz drives them):
//! 1. idle latency: sequential calls;
//! 2. goodput at concurrency 16, unpaced: about capacity on a 2-core machine;
//! 3. overload: 512 callers paced to `--factor` (10) times that goodput in all (ghz
//!    `-c 512 --rps R`): goodput, refusals, and the latency of the calls admitted
//!    against the wait bound plus one batch;
//! 4. a retry storm: the same 512 callers unpaced, each sending again the moment it
//!    is refused (no client backs off), for the record;
//! 5. after each overload, recovery: sequential calls until one is back within 1.5x
//!    the idle latency.
//!
//! Prints a Markdown report for docs/benchmarks.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use vargid_proto::v1::face_service_client::FaceServiceClient;

use crate::batching::face_jpeg;
use crate::load::{drive, LoadResult};
use crate::service::{aligned_request, ServerStats, Service};

/// Goodput, admitted latency and recovery far past capacity.
#[derive(clap::Args)]
pub struct Args {
    /// An aligned 112x112 face (JPEG).
    #[arg(long, default_value = crate::batching::DEFAULT_FACE)]
    face: PathBuf,
    /// Seconds per level (after 2 s of warm-up).
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Unpaced callers of the capacity level.
    #[arg(long, default_value_t = 16)]
    capacity_concurrency: usize,
    /// Callers of the overload and retry-storm levels.
    #[arg(long, default_value_t = 512)]
    overload_concurrency: usize,
    /// Offered load of the overload level, in multiples of the capacity level's goodput.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// The service's `batching.max_queue_wait_ms`.
    #[arg(long, default_value_t = 1000)]
    max_queue_wait_ms: u64,
}

struct Level {
    name: &'static str,
    concurrency: usize,
    /// Calls a second offered in all (None: unpaced).
    rate: Option<f64>,
    /// Ms from the end of this level until a call was back near idle latency.
    recovered_ms: Option<f64>,
    load: LoadResult,
    mean_batch: f64,
    batch_ms: f64,
    refused_by_server: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let jpeg = face_jpeg(&args.face)?;
    let request = aligned_request(&jpeg);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = Service::start(&[(
            "VARGID_BATCHING__MAX_QUEUE_WAIT_MS",
            args.max_queue_wait_ms.to_string(),
        )])
        .await?;
        let channels = server.channels(args.connections).await?;
        let mut client = FaceServiceClient::new(channels[0].clone());
        for _ in 0..5 {
            client.embed(request.clone()).await?;
        }
        let idle = sequential_ms(&mut client, &request, 20).await?;
        let idle_p50 = median(&idle);
        eprintln!("idle p50 {idle_p50:.1} ms");

        let mut levels: Vec<Level> = Vec::new();
        let plan = [
            ("capacity", args.capacity_concurrency, None),
            ("overload", args.overload_concurrency, Some(args.factor)),
            ("retry storm", args.overload_concurrency, None),
        ];
        for (name, c, factor) in plan {
            let rate = factor.map(|f| f * levels[0].load.goodput());
            let before = ServerStats::scrape(&server.metrics_addr).await?;
            let load = drive(&channels, request.clone(), c, rate, Duration::from_secs(2), args.seconds).await?;
            let after = ServerStats::scrape(&server.metrics_addr).await?;
            let (mean_batch, batch_ms) = after.batches_since(&before);
            let recovered_ms = if name == "capacity" {
                None
            } else {
                Some(recovery_ms(&mut client, &request, idle_p50).await?)
            };
            eprintln!(
                "{name}: concurrency {c}, goodput {:.1} faces/s, p50 {:.1} ms, max {:.1} ms, errors {}",
                load.goodput(),
                load.ms(0.5),
                load.max_ms(),
                load.errors_text()
            );
            levels.push(Level {
                name,
                concurrency: c,
                rate,
                recovered_ms,
                load,
                mean_batch,
                batch_ms,
                refused_by_server: after.refused - before.refused,
            });
        }

        let (capacity, overload, storm) = (&levels[0], &levels[1], &levels[2]);
        println!(
            "Idle latency (sequential, concurrency 1): p50 {idle_p50:.2} ms. Wait bound \
             `batching.max_queue_wait_ms` = {} ms; {} HTTP/2 connections; {} s per level \
             after 2 s of warm-up.\n",
            args.max_queue_wait_ms, args.connections, args.seconds
        );
        println!("| level | callers | offered (calls/s) | goodput (faces/s) | p50 (ms) | p99 (ms) | max (ms) | errors | refused by the server | mean batch | ms per batch | back to idle latency after (ms) |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
        for l in &levels {
            println!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {:.1} | {} |",
                l.name,
                l.concurrency,
                l.rate.map_or("unpaced".into(), |r| format!("{r:.0}")),
                l.load.goodput(),
                l.load.ms(0.5),
                l.load.ms(0.99),
                l.load.max_ms(),
                l.load.errors_text(),
                l.refused_by_server,
                l.mean_batch,
                l.batch_ms,
                l.recovered_ms.map_or("".into(), |m| format!("{m:.0}")),
            );
        }
        for l in [overload, storm] {
            println!(
                "\n{}: goodput {:.1}% of the capacity level's; slowest admitted call {:.1} ms \
                 against the bound plus one batch ({} + {:.1} = {:.1} ms).",
                l.name,
                100.0 * l.load.goodput() / capacity.load.goodput(),
                l.load.max_ms(),
                args.max_queue_wait_ms,
                l.batch_ms,
                args.max_queue_wait_ms as f64 + l.batch_ms,
            );
        }
        anyhow::Ok(())
    })
}

/// Sequential calls right after a level ends, until one is within 1.5x `idle_ms`:
/// the ms that took.
async fn recovery_ms(
    client: &mut FaceServiceClient<tonic::transport::Channel>,
    request: &vargid_proto::v1::EmbedRequest,
    idle_ms: f64,
) -> anyhow::Result<f64> {
    let stopped = Instant::now();
    for _ in 0..200 {
        let t = Instant::now();
        client.embed(request.clone()).await?;
        if t.elapsed().as_secs_f64() * 1e3 <= 1.5 * idle_ms {
            return Ok(stopped.elapsed().as_secs_f64() * 1e3);
        }
    }
    bail!("not back to idle latency after 200 calls")
}

async fn sequential_ms(
    client: &mut FaceServiceClient<tonic::transport::Channel>,
    request: &vargid_proto::v1::EmbedRequest,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.embed(request.clone()).await?;
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
