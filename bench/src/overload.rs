//! `vargid-bench overload`: what a caller gets far past capacity. In one run, with one
//! generator (closed-loop callers over the same HTTP/2 connections):
//! 1. idle latency: sequential calls;
//! 2. goodput at concurrency 16 (about capacity on a 2-core machine);
//! 3. goodput at the overload concurrency (512 by default: far more than ten times
//!    the offered load of capacity, since refused callers send again at once), the
//!    refusals, and the latency of the calls admitted, against the wait bound plus
//!    one batch;
//! 4. recovery: sequential calls right after the overload stops, until one is back
//!    within 1.5x the idle latency.
//!
//! Prints a Markdown report for docs/benchmarks.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vargid_proto::v1::face_service_client::FaceServiceClient;

use crate::batching::face_jpeg;
use crate::load::{closed_loop, LoadResult};
use crate::service::{aligned_request, ServerStats, Service};

struct Args {
    face: PathBuf,
    seconds: f64,
    capacity_concurrency: usize,
    overload_concurrency: usize,
    connections: usize,
    max_queue_wait_ms: u64,
}

fn parse_args(argv: Vec<String>) -> anyhow::Result<Args> {
    let mut args = Args {
        face: "../shared/data/lfw/images/Ann_Veneman/Ann_Veneman_0003.jpg".into(),
        seconds: 15.0,
        capacity_concurrency: 16,
        overload_concurrency: 512,
        connections: 8,
        max_queue_wait_ms: 1000,
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--face" => args.face = value()?.into(),
            "--seconds" => args.seconds = value()?.parse()?,
            "--capacity-concurrency" => args.capacity_concurrency = value()?.parse()?,
            "--overload-concurrency" => args.overload_concurrency = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--max-queue-wait-ms" => args.max_queue_wait_ms = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; usage: vargid-bench overload [--face JPG] [--seconds S] \
                 [--capacity-concurrency 16] [--overload-concurrency 512] [--connections 8] \
                 [--max-queue-wait-ms 1000]"
            ),
        }
    }
    Ok(args)
}

struct Level {
    concurrency: usize,
    load: LoadResult,
    mean_batch: f64,
    batch_ms: f64,
    refused_by_server: f64,
}

pub fn run(argv: Vec<String>) -> anyhow::Result<()> {
    let args = parse_args(argv)?;
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

        let mut levels = Vec::new();
        for c in [args.capacity_concurrency, args.overload_concurrency] {
            let before = ServerStats::scrape(&server.metrics_addr).await?;
            let load = closed_loop(&channels, request.clone(), c, Duration::from_secs(2), args.seconds).await?;
            let after = ServerStats::scrape(&server.metrics_addr).await?;
            let (mean_batch, batch_ms) = after.batches_since(&before);
            eprintln!(
                "concurrency {c}: goodput {:.1} faces/s, p50 {:.1} ms, max {:.1} ms, errors {}",
                load.goodput(),
                load.ms(0.5),
                load.max_ms(),
                load.errors_text()
            );
            levels.push(Level {
                concurrency: c,
                load,
                mean_batch,
                batch_ms,
                refused_by_server: after.refused - before.refused,
            });
        }
        // Recovery: the overload's callers have all returned when closed_loop ends.
        let stopped = Instant::now();
        let mut after_ms = Vec::new();
        let recovered_after = loop {
            let t = Instant::now();
            client.embed(request.clone()).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            after_ms.push(ms);
            if ms <= 1.5 * idle_p50 {
                break stopped.elapsed().as_secs_f64() * 1e3;
            }
            if after_ms.len() > 200 {
                bail!("not back to idle latency after 200 calls");
            }
        };

        let (capacity, overload) = (&levels[0], &levels[1]);
        println!(
            "Idle latency (sequential, concurrency 1): p50 {idle_p50:.2} ms. Wait bound \
             `batching.max_queue_wait_ms` = {} ms; {} HTTP/2 connections; {} s per level \
             after 2 s of warm-up.\n",
            args.max_queue_wait_ms, args.connections, args.seconds
        );
        println!("| concurrency | goodput (faces/s) | p50 (ms) | p99 (ms) | max (ms) | errors | refused by the server | mean batch | ms per batch |\n|---:|---:|---:|---:|---:|---|---:|---:|---:|");
        for l in &levels {
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {:.1} |",
                l.concurrency,
                l.load.goodput(),
                l.load.ms(0.5),
                l.load.ms(0.99),
                l.load.max_ms(),
                l.load.errors_text(),
                l.refused_by_server,
                l.mean_batch,
                l.batch_ms
            );
        }
        let ratio = overload.load.goodput() / capacity.load.goodput();
        let limit = args.max_queue_wait_ms as f64 + overload.batch_ms;
        println!(
            "\nGoodput at concurrency {} is {:.1}% of that at concurrency {}. Slowest admitted \
             call under overload: {:.1} ms, against the bound plus one batch ({} + {:.1} = {:.1} ms). \
             After the overload stopped, the first call within 1.5x the idle latency came \
             {recovered_after:.0} ms later (call latencies: {}).",
            overload.concurrency,
            100.0 * ratio,
            capacity.concurrency,
            overload.load.max_ms(),
            args.max_queue_wait_ms,
            overload.batch_ms,
            limit,
            after_ms
                .iter()
                .map(|m| format!("{m:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        anyhow::Ok(())
    })
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
