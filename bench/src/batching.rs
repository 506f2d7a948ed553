//! `vargid-bench batching`: in one run on one machine, measures
//! 1. raw ONNX Runtime throughput of the model at batch sizes 1..64, no server;
//! 2. the service (the real `vargid` binary, started here) on `Embed` with one
//!    pre-aligned face per request at several concurrencies: faces/s, p50, p99.
//!
//! Prints a Markdown report for docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use vargid_model::FaceCrop;

use crate::load::{drive, LoadResult};
use crate::raw::RawModel;
use crate::service::{aligned_request, ServerStats, Service};

/// The aligned face every speed benchmark sends unless told otherwise.
pub const DEFAULT_FACE: &str = "../shared/data/lfw/images/Ann_Veneman/Ann_Veneman_0003.jpg";

/// Raw ONNX Runtime against the service's dynamic batching.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "models/vargfacenet.onnx")]
    model: PathBuf,
    /// An aligned 112x112 face (JPEG).
    #[arg(long, default_value = crate::batching::DEFAULT_FACE)]
    face: PathBuf,
    /// Seconds per point.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Callers at once, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Batch sizes of the raw model.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    batch_sizes: Vec<usize>,
    /// For the raw model and the service alike.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "openvino", "cuda"])]
    execution_provider: String,
    /// The service's `batching.max_batch_size` (its default when unset).
    #[arg(long)]
    max_batch_size: Option<usize>,
}

/// A 112x112 crop around the centre of a photo, encoded as JPEG (what a caller sends).
pub fn face_jpeg(path: &Path) -> anyhow::Result<Vec<u8>> {
    let img = image::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_rgb8();
    let (w, h) = img.dimensions();
    let side = w.min(h) * 2 / 5;
    let crop =
        image::imageops::crop_imm(&img, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let crop = image::imageops::resize(&crop, 112, 112, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    crop.write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

struct ServiceResult {
    concurrency: usize,
    /// Raw best-batch faces/s measured just before and just after this level: this
    /// machine's speed drifts, so each level is compared with its own bracket.
    raw_around: f64,
    mean_batch: f64,
    mean_inference_ms: f64,
    load: LoadResult,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let jpeg = face_jpeg(&args.face)?;
    let crop = FaceCrop::from_aligned(image::load_from_memory(&jpeg)?.into_rgb8())?;

    let mut model = RawModel::load(&args.model, &args.execution_provider, None)?;
    let raw = args
        .batch_sizes
        .iter()
        .map(|&b| model.measure(&crop, b, (args.seconds / 2.0).max(2.0)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let best = raw
        .iter()
        .max_by(|a, b| a.faces_per_s.total_cmp(&b.faces_per_s))
        .context("no batch sizes")?;
    let batch1_ms = raw.iter().find(|r| r.batch == 1).map(|r| r.median_ms);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let service = runtime.block_on(async {
        let mut env = vec![
            ("VARGID_MODEL__EXECUTION_PROVIDER", args.execution_provider.clone()),
            ("VARGID_MODEL__PATH", args.model.display().to_string()),
        ];
        if let Some(max) = args.max_batch_size {
            // Room for every caller's face, so that the queue's count bound is not the limit.
            let queue = max.max(args.concurrency.iter().copied().max().unwrap_or(1)) * 2;
            env.push(("VARGID_BATCHING__MAX_BATCH_SIZE", max.to_string()));
            env.push(("VARGID_BATCHING__QUEUE_CAPACITY", queue.to_string()));
        }
        let server = Service::start(&env).await?;
        let channels = server.channels(1).await?;
        let request = aligned_request(&jpeg);
        let mut results = Vec::new();
        for &c in &args.concurrency {
            let raw_before = model.measure(&crop, best.batch, args.seconds / 3.0)?.faces_per_s;
            let before = ServerStats::scrape(&server.metrics_addr).await?;
            let load = drive(&channels, request.clone(), c, None, Duration::from_secs(2), args.seconds).await?;
            let after = ServerStats::scrape(&server.metrics_addr).await?;
            let raw_after = model.measure(&crop, best.batch, args.seconds / 3.0)?.faces_per_s;
            let (mean_batch, mean_inference_ms) = after.batches_since(&before);
            eprintln!(
                "service concurrency {c}: {:.1} faces/s p50 {:.1} ms, mean batch {mean_batch:.1}, {mean_inference_ms:.1} ms per batch",
                load.goodput(),
                load.ms(0.5),
            );
            results.push(ServiceResult {
                concurrency: c,
                raw_around: (raw_before + raw_after) / 2.0,
                mean_batch,
                mean_inference_ms,
                load,
            });
        }
        anyhow::Ok(results)
    })?;

    println!(
        "Raw ONNX Runtime ({} intra-op threads, no server):\n",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("| batch | faces/s | median batch latency (ms) |\n|---:|---:|---:|");
    for r in &raw {
        println!(
            "| {} | {:.1} | {:.2} |",
            r.batch, r.faces_per_s, r.median_ms
        );
    }
    println!(
        "\nService, `Embed` with one 112x112 JPEG face per request, {} s per level:\n",
        args.seconds
    );
    println!("| concurrency | faces/s | raw best-batch faces/s around it | service / raw | p50 (ms) | p99 (ms) | errors | mean batch | inference per batch (ms) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &service {
        println!(
            "| {} | {:.1} | {:.1} | {:.1}% | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
            r.concurrency,
            r.load.goodput(),
            r.raw_around,
            100.0 * r.load.goodput() / r.raw_around,
            r.load.ms(0.50),
            r.load.ms(0.99),
            r.load.errors_text(),
            r.mean_batch,
            r.mean_inference_ms
        );
    }
    println!(
        "\nRaw best: {:.1} faces/s at batch {}.",
        best.faces_per_s, best.batch
    );
    if let (Some(b1), Some(c1)) = (batch1_ms, service.iter().find(|r| r.concurrency == 1)) {
        println!(
            "Concurrency 1: service p50 {:.2} ms vs one batch-1 inference {:.2} ms ({:+.2} ms, {:+.1}%).",
            c1.load.ms(0.5),
            b1,
            c1.load.ms(0.5) - b1,
            100.0 * (c1.load.ms(0.5) - b1) / b1
        );
    }
    Ok(())
}
