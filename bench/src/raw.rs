//! The model with no server (raw ONNX Runtime), and `vargid-bench raw`, which measures
//! it in a process of its own: ONNX Runtime is loaded once per process, so comparing
//! two runtime libraries (the CPU build and the OpenVINO build) in one benchmark run
//! takes one child process each.
//!
//!     vargid-bench raw [--model F] [--face JPG] [--execution-provider cpu|openvino|cuda]
//!                      [--library LIB] [--seconds S] [--batch-sizes 1,4,16]
//!
//! prints one JSON line: the best batch's faces/s, and the batch-1 median latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use vargid_model::{Embedder, EmbedderOptions, ExecutionProvider, FaceCrop};

use crate::batching::face_jpeg;

pub struct RawResult {
    pub batch: usize,
    pub faces_per_s: f64,
    pub median_ms: f64,
}

/// The model with no server: the same session settings as the server's defaults.
pub struct RawModel {
    embedder: Embedder,
}

pub fn provider(name: &str) -> anyhow::Result<ExecutionProvider> {
    Ok(match name {
        "cpu" => ExecutionProvider::Cpu,
        "openvino" => ExecutionProvider::OpenVino,
        "cuda" => ExecutionProvider::Cuda { device_id: 0 },
        other => bail!("--execution-provider: cpu, openvino or cuda, not {other:?}"),
    })
}

impl RawModel {
    pub fn load(
        model: &Path,
        execution_provider: &str,
        library: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let options = EmbedderOptions {
            intra_op_threads: cores,
            intra_op_spinning: std::env::var("VARGID_MODEL__INTRA_OP_SPINNING")
                .map_or(true, |v| v != "false"),
            execution_provider: provider(execution_provider)?,
            onnxruntime_library: library,
            ..Default::default()
        };
        Ok(Self {
            embedder: Embedder::load(model, &options)?,
        })
    }

    /// Runs `batch` copies of `crop` repeatedly for `seconds` (after one warm-up run).
    pub fn measure(
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

/// The model alone on one runtime library (one JSON line).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "models/vargfacenet.onnx")]
    model: PathBuf,
    /// An aligned 112x112 face (JPEG).
    #[arg(long, default_value = crate::batching::DEFAULT_FACE)]
    face: PathBuf,
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "openvino", "cuda"])]
    execution_provider: String,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Seconds per batch size.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    batch_sizes: Vec<usize>,
}

/// `vargid-bench raw`: see the module comment.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        model,
        face,
        execution_provider: provider_name,
        library,
        seconds,
        batch_sizes: batches,
    } = args;
    let crop = FaceCrop::from_aligned(image::load_from_memory(&face_jpeg(&face)?)?.into_rgb8())?;
    let mut raw = RawModel::load(&model, &provider_name, library.clone())?;
    let results = batches
        .iter()
        .map(|&b| raw.measure(&crop, b, seconds))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let best = results
        .iter()
        .max_by(|a, b| a.faces_per_s.total_cmp(&b.faces_per_s))
        .context("no batch sizes")?;
    println!(
        "{}",
        serde_json::json!({
            "execution_provider": provider_name,
            "library": library.map(|l| l.display().to_string()),
            "best_faces_per_s": best.faces_per_s,
            "best_batch": best.batch,
            "batch1_ms": results.iter().find(|r| r.batch == 1).map(|r| r.median_ms),
        })
    );
    Ok(())
}

/// Runs `vargid-bench raw` in a child process (this executable) and reads its line.
pub fn in_child(
    model: &Path,
    execution_provider: &str,
    library: Option<&Path>,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("raw").arg("--model").arg(model).args([
        "--execution-provider",
        execution_provider,
        "--seconds",
        &seconds.to_string(),
    ]);
    if let Some(lib) = library {
        command.arg("--library").arg(lib);
    }
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running vargid-bench raw")?;
    if !out.status.success() {
        bail!("vargid-bench raw --execution-provider {execution_provider} failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("vargid-bench raw printed nothing")?;
    Ok(serde_json::from_str(line)?)
}
