//! `vargid-bench baseline`: vargid against the per-request Python server
//! (`bench/python/baseline_server.py`: grpcio + ONNX Runtime, batching only within a
//! request, as InsightFace-REST and deepface serve), same API, same model, same ONNX
//! Runtime version, same generator, in one run:
//! - aligned faces: `Embed` of one pre-aligned 112x112 JPEG;
//! - whole photos: `Identify` of one 250x250 LFW photo (detection, alignment,
//!   embedding, search) against a gallery of `--gallery` LFW people;
//!
//! each at concurrency 1 and 16. The two servers alternate, two rounds each, so that
//! drift between minutes hits both alike; figures pool both rounds.
//!
//! `--execution-provider openvino` runs vargid on that provider, `--model` on another
//! model file (the int8 one). Raw ONNX Runtime (no server, best batch) is measured
//! before and after the servers, in child processes (`vargid-bench raw`): the pinned
//! CPU build on the float32 model, the reference the service is compared with, and
//! the service's own provider and model. The Python baseline always runs the float32
//! model on the CPU build, as a per-request server would.
//!
//! Prints a Markdown report for docs/benchmarks.md.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

use crate::batching::face_jpeg;
use crate::load::{drive, Call, LoadResult};
use crate::raw;
use crate::service::{aligned_request, connect, Service};

/// vargid against a per-request Python grpcio + ONNX Runtime server.
#[derive(clap::Args)]
pub struct Args {
    /// LFW (photos in `images/`).
    #[arg(long, env = "VARGID_LFW_DIR", default_value = "../shared/data/lfw")]
    lfw: PathBuf,
    /// The Python that runs bench/python/baseline_server.py.
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Seconds per round and level.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Callers at once, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// LFW identities enrolled in each server.
    #[arg(long, default_value_t = 100)]
    gallery: usize,
    /// vargid's `model.execution_provider`.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "openvino"])]
    execution_provider: String,
    /// vargid's `model.path` (and the model of its raw measurement).
    #[arg(long, default_value = FP32_MODEL)]
    model: PathBuf,
}

/// The float32 model: the Python baseline's, and the raw reference's.
const FP32_MODEL: &str = "models/vargfacenet.onnx";

/// The library each provider's raw measurement loads (what the install scripts put here).
fn raw_library(provider: &str) -> &'static str {
    match provider {
        "openvino" => ".deps/onnxruntime-openvino/libonnxruntime.so",
        _ => ".deps/onnxruntime/libonnxruntime.so",
    }
}

/// The Python baseline server, killed when dropped.
struct Baseline {
    addr: String,
    _child: tokio::process::Child,
}

impl Baseline {
    async fn start(python: &PathBuf) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(python)
            .arg("bench/python/baseline_server.py")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the baseline with {}", python.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await?
                .context("the baseline exited before listening (scripts/setup-python.sh)")?;
            if let Some(addr) = line.strip_prefix("baseline: listening on ") {
                break addr.trim().to_string();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            addr,
            _child: child,
        })
    }
}

/// One photo of each of the first `n` LFW people, in name order.
fn gallery_photos(lfw: &std::path::Path, n: usize) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let images = lfw.join("images");
    let mut people: Vec<String> = std::fs::read_dir(&images)
        .with_context(|| format!("reading {}", images.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    people.sort();
    people
        .into_iter()
        .take(n)
        .map(|name| {
            // The lowest-numbered photo (not every person has a _0001).
            let dir = images.join(&name);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| Some(e.ok()?.path()))
                .collect();
            files.sort();
            let photo = files
                .first()
                .with_context(|| format!("{} is empty", dir.display()))?;
            let jpeg =
                std::fs::read(photo).with_context(|| format!("reading {}", photo.display()))?;
            Ok((name, jpeg))
        })
        .collect()
}

/// Enrolls each photo as its own identity; photos with no usable face are skipped.
async fn enroll_gallery(channel: &Channel, photos: &[(String, Vec<u8>)]) -> anyhow::Result<usize> {
    let mut client = FaceServiceClient::new(channel.clone());
    let mut enrolled = 0;
    for (name, jpeg) in photos {
        let request = pb::EnrollRequest {
            identity_id: name.clone(),
            images: vec![pb::Image {
                source: Some(pb::image::Source::Encoded(jpeg.clone())),
                location: pb::FaceLocation::Auto as i32,
                landmarks: None,
            }],
            use_largest_face: true,
            ..Default::default()
        };
        if client.enroll(request).await.is_ok() {
            enrolled += 1;
        }
    }
    Ok(enrolled)
}

struct Row {
    workload: &'static str,
    concurrency: usize,
    vargid: Vec<LoadResult>,
    baseline: Vec<LoadResult>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let face = args.lfw.join("images/Ann_Veneman/Ann_Veneman_0003.jpg");
    let aligned = aligned_request(&face_jpeg(&face)?);
    let photo = std::fs::read(&face).with_context(|| format!("reading {}", face.display()))?;
    let identify = pb::IdentifyRequest {
        image: Some(pb::Image {
            source: Some(pb::image::Source::Encoded(photo)),
            location: pb::FaceLocation::Auto as i32,
            landmarks: None,
        }),
        top_k: 5,
        ..Default::default()
    };
    let photos = gallery_photos(&args.lfw, args.gallery)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // (provider, model): the float32 reference first, then the service's own path.
    let fp32 = ("cpu", PathBuf::from(FP32_MODEL));
    let service_path = (args.execution_provider.as_str(), args.model.clone());
    let mut raw_paths = vec![fp32.clone()];
    if service_path != fp32 {
        raw_paths.push(service_path);
    }
    let label = |(p, model): &(&str, PathBuf)| format!("{p}, {}", model.display());
    let measure_raw = |into: &mut Vec<(String, f64, f64)>| -> anyhow::Result<()> {
        for path in &raw_paths {
            let (p, model) = path;
            let r = raw::in_child(model, p, Some(std::path::Path::new(raw_library(p))), 4.0)?;
            let best = r["best_faces_per_s"].as_f64().unwrap_or(0.0);
            let b1 = r["batch1_ms"].as_f64().unwrap_or(0.0);
            eprintln!(
                "raw {}: best {best:.1} faces/s, batch 1 {b1:.2} ms",
                label(path)
            );
            into.push((label(path), best, b1));
        }
        Ok(())
    };
    let mut raw_runs = Vec::new();
    measure_raw(&mut raw_runs)?;
    let service_env = [
        (
            "VARGID_MODEL__EXECUTION_PROVIDER",
            args.execution_provider.clone(),
        ),
        ("VARGID_MODEL__PATH", args.model.display().to_string()),
    ];
    let rows = runtime.block_on(async {
        let vargid = Service::start(&service_env).await?;
        let baseline = Baseline::start(&args.python).await?;
        let vargid_channel = connect(&vargid.addr).await?;
        let baseline_channel = connect(&baseline.addr).await?;
        let enrolled_v = enroll_gallery(&vargid_channel, &photos).await?;
        let enrolled_b = enroll_gallery(&baseline_channel, &photos).await?;
        eprintln!("gallery: {enrolled_v} identities in vargid, {enrolled_b} in the baseline");
        let workloads: [(&'static str, Call); 2] = [
            ("aligned face (Embed)", Call::Embed(aligned)),
            (
                "whole photo (Identify, detection on)",
                Call::Identify(identify),
            ),
        ];
        let mut rows = Vec::new();
        for (workload, call) in &workloads {
            for &c in &args.concurrency {
                let mut row = Row {
                    workload,
                    concurrency: c,
                    vargid: Vec::new(),
                    baseline: Vec::new(),
                };
                for _round in 0..2 {
                    let warmup = Duration::from_secs(2);
                    let v = drive(
                        std::slice::from_ref(&vargid_channel),
                        call.clone(),
                        c,
                        None,
                        warmup,
                        args.seconds,
                    )
                    .await?;
                    let b = drive(
                        std::slice::from_ref(&baseline_channel),
                        call.clone(),
                        c,
                        None,
                        warmup,
                        args.seconds,
                    )
                    .await?;
                    eprintln!(
                        "{workload} c={c}: vargid {:.1}/s, baseline {:.1}/s",
                        v.goodput(),
                        b.goodput()
                    );
                    row.vargid.push(v);
                    row.baseline.push(b);
                }
                rows.push(row);
            }
        }
        anyhow::Ok((rows, enrolled_v, enrolled_b))
    })?;
    measure_raw(&mut raw_runs)?;
    let (rows, enrolled_v, enrolled_b) = rows;
    let raw_mean = |l: &str| -> (f64, f64) {
        let runs: Vec<_> = raw_runs.iter().filter(|r| r.0 == l).collect();
        let n = runs.len().max(1) as f64;
        (
            runs.iter().map(|r| r.1).sum::<f64>() / n,
            runs.iter().map(|r| r.2).sum::<f64>() / n,
        )
    };
    let (raw_fp32, raw_fp32_b1) = raw_mean(&label(&fp32));
    println!(
        "Raw ONNX Runtime, no server, best of batch 1/4/16, before and after the servers (mean):\n"
    );
    println!("| provider, model | faces/s | batch-1 latency (ms) |\n|---|---:|---:|");
    for path in &raw_paths {
        let (best, b1) = raw_mean(&label(path));
        println!(
            "| {} ({}) | {best:.1} | {b1:.2} |",
            label(path),
            raw_library(path.0)
        );
    }
    println!();
    {
        println!(
            "Gallery: {enrolled_v} LFW identities in vargid, {enrolled_b} in the baseline. \
             Two alternating rounds of {} s (after 2 s of warm-up) per server and level, pooled.\n",
            args.seconds
        );
        println!("vargid runs `{}` on `{}`; raw fp32 ONNX Runtime (CPU build) {raw_fp32:.1} faces/s, batch 1 {raw_fp32_b1:.2} ms.\n", args.model.display(), args.execution_provider);
        println!("| workload | concurrency | vargid faces/s | baseline faces/s | vargid / baseline | vargid / raw fp32 ORT | vargid p50 / p99 (ms) | baseline p50 / p99 (ms) | errors (vargid, baseline) |\n|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &rows {
            let (v, b) = (
                LoadResult::pooled(&r.vargid),
                LoadResult::pooled(&r.baseline),
            );
            let (vg, vp50, vp99, ve) = (
                v.goodput(),
                v.ms(0.5),
                v.ms(0.99),
                v.errors.values().sum::<usize>(),
            );
            let (bg, bp50, bp99, be) = (
                b.goodput(),
                b.ms(0.5),
                b.ms(0.99),
                b.errors.values().sum::<usize>(),
            );
            println!(
                "| {} | {} | {vg:.1} | {bg:.1} | {:.2}x | {:.2}x | {vp50:.1} / {vp99:.1} | {bp50:.1} / {bp99:.1} | {ve}, {be} |",
                r.workload,
                r.concurrency,
                vg / bg,
                vg / raw_fp32
            );
        }
    }
    Ok(())
}
