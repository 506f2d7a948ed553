//! One ONNX Runtime session of the face embedding model.

use std::path::{Path, PathBuf};

use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider};
use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use crate::error::ModelError;
use crate::image::{FaceCrop, CROP_SIZE};
use crate::runtime;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    /// NVIDIA GPU through ONNX Runtime's CUDA provider (cargo feature `cuda`).
    Cuda { device_id: i32 },
    /// Intel's OpenVINO on the CPU, through ONNX Runtime's OpenVINO provider (the
    /// `onnxruntime-openvino` library, scripts/install-ort-openvino.sh), in float32.
    OpenVino,
}

impl ExecutionProvider {
    pub fn name(&self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "CPU",
            ExecutionProvider::Cuda { .. } => "CUDA",
            ExecutionProvider::OpenVino => "OpenVINO",
        }
    }
}

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct EmbedderOptions {
    pub execution_provider: ExecutionProvider,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose (one per core).
    pub intra_op_threads: usize,
    /// Whether idle intra-op threads spin-wait for work (ONNX Runtime's default):
    /// faster inference, for CPU that other threads could use.
    pub intra_op_spinning: bool,
    /// The ONNX Runtime shared library; `None` reads `ORT_DYLIB_PATH`.
    pub onnxruntime_library: Option<PathBuf>,
    /// Test-time flip: a face's embedding is the normalised sum of the embeddings of
    /// the crop and of its mirror. Costs a second inference per face.
    pub flip_test: bool,
}

/// What the model says about itself (ONNX metadata) and its tensor names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub embedding_size: usize,
    pub input_name: String,
    pub output_name: String,
    pub execution_provider: &'static str,
    /// The batch size the ONNX graph fixes (e.g. 1), or `None` when it is dynamic.
    /// A fixed-batch model is run one fixed-size chunk at a time.
    pub fixed_batch: Option<usize>,
    pub flip_test: bool,
    /// The ONNX metadata's `precision` ("int8" for a quantized model), else "fp32".
    /// Not part of the model tag: a quantized model keeps its source's version when
    /// its templates are interchangeable with the source's (vargface.quantize).
    pub precision: String,
}

/// A loaded model. Not shareable between threads while running: ONNX Runtime sessions
/// are run through `&mut self`; the server keeps one per model instance.
pub struct Embedder {
    session: Session,
    info: ModelInfo,
    input: Vec<f32>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", &self.info)
            .finish()
    }
}

impl Embedder {
    /// Loads an ONNX face embedder: input `[N, 3, 112, 112]` f32, output `[N, D]` f32.
    pub fn load(path: &Path, options: &EmbedderOptions) -> Result<Self, ModelError> {
        let env = runtime::environment(options.onnxruntime_library.as_deref())?;
        let load_err = |reason: String| ModelError::Load {
            path: path.display().to_string(),
            reason,
        };
        if !path.is_file() {
            return Err(load_err("no such file".into()));
        }
        let builder = runtime::session_builder(
            env,
            path,
            options.intra_op_threads,
            options.intra_op_spinning,
        )?;
        let mut builder = register_provider(
            builder,
            options.execution_provider,
            options.intra_op_threads,
        )?;
        let session = builder
            .commit_from_file(path)
            .map_err(|e| load_err(e.to_string()))?;
        let mut info = inspect(&session, path, options.execution_provider)?;
        if options.flip_test {
            // Templates made with the flip are not comparable with ones made without.
            info.flip_test = true;
            info.version.push_str("+flip");
        }
        Ok(Self {
            session,
            info,
            input: Vec::new(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Embeds a batch of crops; returns one L2-normalised vector per crop, in order.
    pub fn embed(&mut self, crops: &[&FaceCrop]) -> Result<Vec<Vec<f32>>, ModelError> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let per = FaceCrop::TENSOR_LEN;
        let views = if self.info.flip_test { 2 } else { 1 };
        self.input.resize(crops.len() * views * per, 0.0);
        let (plain, mirrored) = self.input.split_at_mut(crops.len() * per);
        for (crop, out) in crops.iter().zip(plain.chunks_exact_mut(per)) {
            crop.write_chw(out);
        }
        for (crop, out) in crops.iter().zip(mirrored.chunks_exact_mut(per)) {
            crop.write_chw_mirrored(out);
        }
        let embeddings = self.run_chw(crops.len() * views)?;
        if !self.info.flip_test {
            return Ok(embeddings);
        }
        let (plain, mirrored) = embeddings.split_at(crops.len());
        Ok(plain
            .iter()
            .zip(mirrored)
            .map(|(a, b)| {
                let sum: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + y).collect();
                l2_normalised(&sum)
            })
            .collect())
    }

    /// Embeds `batch` images already laid out as NCHW f32 in 0..255 (used by tests and
    /// benchmarks that feed exact tensors).
    pub fn embed_tensor(&mut self, nchw: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = FaceCrop::TENSOR_LEN;
        if nchw.is_empty() || !nchw.len().is_multiple_of(per) {
            return Err(ModelError::Inference(format!(
                "input of {} floats is not a whole number of 3x112x112 images",
                nchw.len()
            )));
        }
        self.input.clear();
        self.input.extend_from_slice(nchw);
        self.run_chw(nchw.len() / per)
    }

    /// Runs the first `batch` images of `self.input`, in chunks of the model's fixed
    /// batch when it has one (the last chunk padded with zeros, its extra rows dropped).
    fn run_chw(&mut self, batch: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let Some(fixed) = self.info.fixed_batch else {
            return self.run_once(0, batch);
        };
        let per = FaceCrop::TENSOR_LEN;
        let chunks = batch.div_ceil(fixed);
        self.input.resize(chunks * fixed * per, 0.0);
        self.input[batch * per..].fill(0.0);
        let mut out = Vec::with_capacity(chunks * fixed);
        for chunk in 0..chunks {
            out.extend(self.run_once(chunk * fixed, fixed)?);
        }
        out.truncate(batch);
        Ok(out)
    }

    /// One ONNX Runtime call on `batch` images of `self.input` from image `first`.
    fn run_once(&mut self, first: usize, batch: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let side = CROP_SIZE as usize;
        let per = FaceCrop::TENSOR_LEN;
        let shape = [batch, 3, side, side];
        let data = &self.input[first * per..(first + batch) * per];
        let input = TensorRef::from_array_view((shape, data))
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.info.input_name.as_str() => input])
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let (out_shape, data) = outputs[self.info.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let dim = self.info.embedding_size;
        if out_shape.len() != 2 || out_shape[0] as usize != batch || data.len() != batch * dim {
            return Err(ModelError::Inference(format!(
                "unexpected output shape {out_shape:?} for batch {batch}"
            )));
        }
        Ok(data.chunks_exact(dim).map(l2_normalised).collect())
    }
}

/// Adds the execution provider to a session builder (the CPU needs none). Shared by
/// the embedder and the detector.
pub(crate) fn register_provider(
    builder: ort::session::builder::SessionBuilder,
    provider: ExecutionProvider,
    threads: usize,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    match provider {
        ExecutionProvider::Cpu => Ok(builder),
        ExecutionProvider::Cuda { device_id } => cuda(builder, device_id),
        ExecutionProvider::OpenVino => openvino(builder, threads),
    }
}

fn openvino(
    builder: ort::session::builder::SessionBuilder,
    threads: usize,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    let mut provider = ep::OpenVINO::default()
        .with_device_type("CPU")
        // Float32, as ONNX Runtime's CPU provider: OpenVINO would otherwise pick
        // bfloat16 on CPUs with AMX, and the accuracy figures are float32's.
        .with_precision("FP32")
        // OpenVINO pins each compiled model's threads to cores, and every session in a
        // process to the same ones: two instances of one thread each then share one
        // core (100.6 faces/s on 2 cores against 205.7 unpinned, measured in Python).
        .with_arbitrary_config("load_config", r#"{"CPU":{"ENABLE_CPU_PINNING":"NO"}}"#);
    if threads > 0 {
        provider = provider.with_num_threads(threads);
    }
    // error_on_failure: without it ONNX Runtime silently runs on its CPU provider.
    builder
        .with_execution_providers([provider.build().error_on_failure()])
        .map_err(|e| ModelError::ExecutionProvider {
            provider: "OpenVINO",
            reason: format!(
                "{e} (the library must be onnxruntime-openvino's: scripts/install-ort-openvino.sh)"
            ),
        })
}

#[cfg(feature = "cuda")]
fn cuda(
    builder: ort::session::builder::SessionBuilder,
    device_id: i32,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    // error_on_failure: without it ONNX Runtime silently falls back to the CPU.
    builder
        .with_execution_providers([ep::CUDA::default()
            .with_device_id(device_id)
            .build()
            .error_on_failure()])
        .map_err(|e| ModelError::ExecutionProvider {
            provider: "CUDA",
            reason: e.to_string(),
        })
}

#[cfg(not(feature = "cuda"))]
fn cuda(
    _builder: ort::session::builder::SessionBuilder,
    _device_id: i32,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    Err(ModelError::ExecutionProvider {
        provider: "CUDA",
        reason: "this build has no CUDA support (build with cargo feature `cuda`)".into(),
    })
}

/// Reads tensor names, shapes and metadata, checking the model is a face embedder.
fn inspect(
    session: &Session,
    path: &Path,
    provider: ExecutionProvider,
) -> Result<ModelInfo, ModelError> {
    let bad = |reason: String| ModelError::Incompatible {
        path: path.display().to_string(),
        reason,
    };
    let [input] = session.inputs() else {
        return Err(bad(format!(
            "expected 1 input, found {}",
            session.inputs().len()
        )));
    };
    let [output, ..] = session.outputs() else {
        return Err(bad("the model has no output".into()));
    };
    let dims = |ty: &ValueType| -> Option<Vec<i64>> { ty.tensor_shape().map(|s| s.to_vec()) };
    let in_dims = dims(input.dtype()).ok_or_else(|| bad("input is not a tensor".into()))?;
    let side = i64::from(CROP_SIZE);
    if in_dims.len() != 4 || in_dims[1] != 3 || in_dims[2] != side || in_dims[3] != side {
        return Err(bad(format!(
            "input {} has shape {in_dims:?}, expected [N, 3, 112, 112]",
            input.name()
        )));
    }
    let out_dims = dims(output.dtype()).ok_or_else(|| bad("output is not a tensor".into()))?;
    let embedding_size = match out_dims.as_slice() {
        [_, d] if *d > 0 => *d as usize,
        _ => {
            return Err(bad(format!(
                "output {} has shape {out_dims:?}, expected [N, D]",
                output.name()
            )))
        }
    };
    let meta = session
        .metadata()
        .map_err(|e| bad(format!("cannot read metadata: {e}")))?;
    // A model without a name (SFace's ONNX has no metadata) is tagged by its file:
    // the stem as the name and a digest of the bytes as the version, so a gallery
    // never takes templates from two different unlabelled models.
    let name = meta
        .custom("model_name")
        .or_else(|| meta.graph_description().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| file_stem(path));
    let version = match meta.custom("model_version") {
        Some(v) => v,
        None => file_digest(path).map_err(|e| bad(format!("cannot read the file: {e}")))?,
    };
    if let Some(declared) = meta.custom("embedding_size") {
        if declared.trim() != embedding_size.to_string() {
            return Err(bad(format!(
                "metadata says embedding_size {declared}, output has {embedding_size}"
            )));
        }
    }
    Ok(ModelInfo {
        name,
        version,
        embedding_size,
        input_name: input.name().to_string(),
        output_name: output.name().to_string(),
        execution_provider: provider.name(),
        fixed_batch: (in_dims[0] > 0).then_some(in_dims[0] as usize),
        flip_test: false,
        precision: meta.custom("precision").unwrap_or_else(|| "fp32".into()),
    })
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "unknown".into(), |s| s.to_string_lossy().into_owned())
}

/// `sha256:` and the first 12 hex digits of the file's SHA-256.
fn file_digest(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    let hex: String = hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}
