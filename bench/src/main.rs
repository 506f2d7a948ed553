//! `vargid-bench batching`: in one run on one machine, measures
//! 1. raw ONNX Runtime throughput of the model at batch sizes 1..64, no server;
//! 2. the service (the real `vargid` binary, started here) on `Embed` with one
//!    pre-aligned face per request at several concurrencies: faces/s, p50, p99.
//!
//! Prints a Markdown report for docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use vargid_model::{Embedder, EmbedderOptions, FaceCrop};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

struct Args {
    model: PathBuf,
    face: PathBuf,
    seconds: f64,
    concurrency: Vec<usize>,
    batch_sizes: Vec<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        model: "models/vargfacenet.onnx".into(),
        face: "../shared/data/lfw/images/Ann_Veneman/Ann_Veneman_0003.jpg".into(),
        seconds: 20.0,
        concurrency: vec![1, 4, 16, 64],
        batch_sizes: vec![1, 2, 4, 8, 16, 32, 64],
    };
    let mut it = std::env::args().skip(1);
    let list = |s: String| -> anyhow::Result<Vec<usize>> {
        s.split(',')
            .map(|v| v.trim().parse().context("a list of numbers"))
            .collect()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "batching" => {}
            "--model" => args.model = value()?.into(),
            "--face" => args.face = value()?.into(),
            "--seconds" => args.seconds = value()?.parse()?,
            "--concurrency" => args.concurrency = list(value()?)?,
            "--batch-sizes" => args.batch_sizes = list(value()?)?,
            other => bail!(
                "unknown argument {other}; usage: vargid-bench batching [--model F] [--face JPG] \
                 [--seconds S] [--concurrency 1,4,16,64] [--batch-sizes 1,2,...]"
            ),
        }
    }
    Ok(args)
}

/// A 112x112 crop around the centre of a photo, encoded as JPEG (what a caller sends).
fn face_jpeg(path: &Path) -> anyhow::Result<Vec<u8>> {
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

struct RawResult {
    batch: usize,
    faces_per_s: f64,
    median_ms: f64,
}

fn raw_onnxruntime(args: &Args, crop: &FaceCrop) -> anyhow::Result<Vec<RawResult>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let options = EmbedderOptions {
        intra_op_threads: cores,
        ..Default::default()
    };
    let mut embedder = Embedder::load(&args.model, &options)?;
    let mut results = Vec::new();
    let per_size = Duration::from_secs_f64((args.seconds / 2.0).max(2.0));
    for &batch in &args.batch_sizes {
        let crops: Vec<&FaceCrop> = std::iter::repeat_n(crop, batch).collect();
        embedder.embed(&crops)?; // warm-up
        let mut times = Vec::new();
        let started = Instant::now();
        while started.elapsed() < per_size || times.len() < 3 {
            let t = Instant::now();
            embedder.embed(&crops)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let total: f64 = times.iter().sum();
        times.sort_by(f64::total_cmp);
        results.push(RawResult {
            batch,
            faces_per_s: (batch * times.len()) as f64 / total,
            median_ms: times[times.len() / 2] * 1e3,
        });
        eprintln!(
            "raw batch {batch}: {:.1} faces/s",
            results.last().map_or(0.0, |r| r.faces_per_s)
        );
    }
    Ok(results)
}

struct ServiceResult {
    concurrency: usize,
    faces_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

async fn load(
    addr: &str,
    jpeg: Arc<Vec<u8>>,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<ServiceResult> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let warmup = Duration::from_secs(2);
    let measure = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let mut client = FaceServiceClient::new(channel.clone());
        let jpeg = jpeg.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let now = start.elapsed();
                if now >= warmup + measure {
                    break;
                }
                let request = pb::EmbedRequest {
                    images: vec![pb::Image {
                        source: Some(pb::image::Source::Encoded(jpeg.as_ref().clone())),
                        location: pb::FaceLocation::Aligned as i32,
                        landmarks: None,
                    }],
                };
                let t = Instant::now();
                let ok = client.embed(request).await.is_ok();
                let took = t.elapsed();
                if now >= warmup && start.elapsed() <= warmup + measure {
                    if ok {
                        latencies.push(took.as_secs_f64());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (l, e) = joined?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
            * 1e3
    };
    Ok(ServiceResult {
        concurrency,
        faces_per_s: latencies.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    })
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let jpeg = face_jpeg(&args.face)?;
    let crop = FaceCrop::from_aligned(image::load_from_memory(&jpeg)?.into_rgb8())?;

    let raw = raw_onnxruntime(&args, &crop)?;
    let best = raw
        .iter()
        .max_by(|a, b| a.faces_per_s.total_cmp(&b.faces_per_s))
        .context("no batch sizes")?;
    let batch1_ms = raw.iter().find(|r| r.batch == 1).map(|r| r.median_ms);

    let exe = std::env::current_exe()?;
    let binary = exe.parent().context("bin dir")?.join("vargid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let jpeg = Arc::new(jpeg);
    let service = runtime.block_on(async {
        let mut server = tokio::process::Command::new(&binary)
            .env("VARGID_SERVER__LISTEN", "127.0.0.1:0")
            .env("VARGID_METRICS__LISTEN", "")
            .env(
                "VARGID_GALLERY__DATA_DIR",
                std::env::temp_dir().join("vargid-bench-data"),
            )
            .env("VARGID_LOG__FILTER", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(server.stdout.take().context("stdout")?).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await?
                .context("vargid exited before listening")?;
            if let Some(rest) = line.split("grpc=").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut results = Vec::new();
        for &c in &args.concurrency {
            let r = load(&addr, jpeg.clone(), c, args.seconds).await?;
            eprintln!(
                "service concurrency {c}: {:.1} faces/s p50 {:.1} ms",
                r.faces_per_s, r.p50_ms
            );
            results.push(r);
        }
        server.kill().await.ok();
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
    println!("| concurrency | faces/s | % of raw best | p50 (ms) | p99 (ms) | errors |\n|---:|---:|---:|---:|---:|---:|");
    for r in &service {
        println!(
            "| {} | {:.1} | {:.1}% | {:.2} | {:.2} | {} |",
            r.concurrency,
            r.faces_per_s,
            100.0 * r.faces_per_s / best.faces_per_s,
            r.p50_ms,
            r.p99_ms,
            r.errors
        );
    }
    println!(
        "\nRaw best: {:.1} faces/s at batch {}.",
        best.faces_per_s, best.batch
    );
    if let (Some(b1), Some(c1)) = (batch1_ms, service.iter().find(|r| r.concurrency == 1)) {
        println!(
            "Concurrency 1: service p50 {:.2} ms vs one batch-1 inference {:.2} ms ({:+.2} ms, {:+.1}%).",
            c1.p50_ms,
            b1,
            c1.p50_ms - b1,
            100.0 * (c1.p50_ms - b1) / b1
        );
    }
    Ok(())
}
