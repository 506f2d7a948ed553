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

fn parse_args(argv: Vec<String>) -> anyhow::Result<Args> {
    let mut args = Args {
        model: "models/vargfacenet.onnx".into(),
        face: "../shared/data/lfw/images/Ann_Veneman/Ann_Veneman_0003.jpg".into(),
        seconds: 20.0,
        concurrency: vec![1, 4, 16, 64],
        batch_sizes: vec![1, 2, 4, 8, 16, 32, 64],
    };
    let mut it = argv.into_iter();
    let list = |s: String| -> anyhow::Result<Vec<usize>> {
        s.split(',')
            .map(|v| v.trim().parse().context("a list of numbers"))
            .collect()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
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

/// The model with no server: the same session settings as the server's defaults.
struct RawModel {
    embedder: Embedder,
}

impl RawModel {
    fn load(model: &Path) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let options = EmbedderOptions {
            intra_op_threads: cores,
            intra_op_spinning: std::env::var("VARGID_MODEL__INTRA_OP_SPINNING")
                .map_or(true, |v| v != "false"),
            ..Default::default()
        };
        Ok(Self {
            embedder: Embedder::load(model, &options)?,
        })
    }

    /// Runs `batch` copies of `crop` repeatedly for `seconds` (after one warm-up run).
    fn measure(
        &mut self,
        crop: &FaceCrop,
        batch: usize,
        seconds: f64,
    ) -> anyhow::Result<RawResult> {
        let crops: Vec<&FaceCrop> = std::iter::repeat_n(crop, batch).collect();
        self.embedder.embed(&crops)?;
        let mut times = Vec::new();
        let started = Instant::now();
        while started.elapsed().as_secs_f64() < seconds || times.len() < 3 {
            let t = Instant::now();
            self.embedder.embed(&crops)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let total: f64 = times.iter().sum();
        times.sort_by(f64::total_cmp);
        let result = RawResult {
            batch,
            faces_per_s: (batch * times.len()) as f64 / total,
            median_ms: times[times.len() / 2] * 1e3,
        };
        eprintln!("raw batch {batch}: {:.1} faces/s", result.faces_per_s);
        Ok(result)
    }
}

struct ServiceResult {
    concurrency: usize,
    /// Raw best-batch faces/s measured just before and just after this level: this
    /// machine's speed drifts, so each level is compared with its own bracket.
    raw_around: f64,
    mean_batch: f64,
    mean_inference_ms: f64,
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
        raw_around: f64::NAN,
        mean_batch: f64::NAN,
        mean_inference_ms: f64::NAN,
        faces_per_s: latencies.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    })
}

/// `key=value` from a tracing text log line.
fn log_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_matches('"').to_string())
}

/// Cumulative batching counters from the server's /metrics.
struct ServerStats {
    batches: f64,
    batch_faces: f64,
    inference_s: f64,
}

impl ServerStats {
    async fn scrape(addr: &str) -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        let value = |series: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
                .unwrap_or(0.0)
        };
        Ok(Self {
            batches: value("vargid_batch_size_count"),
            batch_faces: value("vargid_batch_size_sum"),
            inference_s: value("vargid_inference_duration_seconds_sum"),
        })
    }
}

pub fn run(argv: Vec<String>) -> anyhow::Result<()> {
    let args = parse_args(argv)?;
    let jpeg = face_jpeg(&args.face)?;
    let crop = FaceCrop::from_aligned(image::load_from_memory(&jpeg)?.into_rgb8())?;

    let mut model = RawModel::load(&args.model)?;
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
            .env("VARGID_METRICS__LISTEN", "127.0.0.1:0")
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
        let (addr, metrics_addr) = loop {
            let line = lines
                .next_line()
                .await?
                .context("vargid exited before listening")?;
            if let (Some(grpc), Some(metrics)) = (log_field(&line, "grpc"), log_field(&line, "metrics")) {
                break (grpc, metrics);
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut results = Vec::new();
        for &c in &args.concurrency {
            let raw_before = model.measure(&crop, best.batch, args.seconds / 3.0)?.faces_per_s;
            let before = ServerStats::scrape(&metrics_addr).await?;
            let mut r = load(&addr, jpeg.clone(), c, args.seconds).await?;
            let after = ServerStats::scrape(&metrics_addr).await?;
            let raw_after = model.measure(&crop, best.batch, args.seconds / 3.0)?.faces_per_s;
            r.raw_around = (raw_before + raw_after) / 2.0;
            r.mean_batch = (after.batch_faces - before.batch_faces) / (after.batches - before.batches);
            r.mean_inference_ms = 1e3 * (after.inference_s - before.inference_s) / (after.batches - before.batches);
            eprintln!(
                "service concurrency {c}: {:.1} faces/s p50 {:.1} ms, mean batch {:.1}, {:.1} ms per batch",
                r.faces_per_s, r.p50_ms, r.mean_batch, r.mean_inference_ms
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
    println!("| concurrency | faces/s | raw best-batch faces/s around it | service / raw | p50 (ms) | p99 (ms) | errors | mean batch | inference per batch (ms) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &service {
        println!(
            "| {} | {:.1} | {:.1} | {:.1}% | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
            r.concurrency,
            r.faces_per_s,
            r.raw_around,
            100.0 * r.faces_per_s / r.raw_around,
            r.p50_ms,
            r.p99_ms,
            r.errors,
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
            c1.p50_ms,
            b1,
            c1.p50_ms - b1,
            100.0 * (c1.p50_ms - b1) / b1
        );
    }
    Ok(())
}
