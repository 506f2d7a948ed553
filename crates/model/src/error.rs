//! Typed errors of the model crate.

/// Why an image could not become a face crop. Messages are meant for API callers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("image is empty")]
    Empty,
    #[error("encoded image is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported image format: expected JPEG, PNG or WebP")]
    UnsupportedFormat,
    #[error("image of {width}x{height} pixels exceeds the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("cannot decode image: {0}")]
    Corrupt(String),
    #[error("raw image: {len} bytes do not match {width}x{height} RGB ({expected} bytes)")]
    RawSizeMismatch {
        width: u32,
        height: u32,
        len: usize,
        expected: u64,
    },
    #[error("aligned face crop must be {expected}x{expected} pixels, got {width}x{height}")]
    NotAlignedSize {
        width: u32,
        height: u32,
        expected: u32,
    },
}

/// Failures loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot load the ONNX Runtime library {path}: {reason}")]
    RuntimeLibrary { path: String, reason: String },
    #[error(
        "ONNX Runtime library not configured: set ORT_DYLIB_PATH or model.onnxruntime_library"
    )]
    RuntimeLibraryUnset,
    #[error("execution provider {provider} could not be used: {reason}")]
    ExecutionProvider {
        provider: &'static str,
        reason: String,
    },
    #[error("cannot load model {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("model {path} is not a face embedder: {reason}")]
    Incompatible { path: String, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
}
