//! The face embedding model: decoding face images into model input and running the
//! VarGFaceNet ONNX graph through ONNX Runtime.
//!
//! - [`image`]: encoded or raw images to 112x112 RGB face crops, with size limits.
//! - [`runtime`]: loading the ONNX Runtime shared library once per process.
//! - [`embedder`]: one inference session; batches of crops to L2-normalised embeddings.

pub mod embedder;
pub mod error;
pub mod image;
pub mod runtime;

pub use embedder::{Embedder, EmbedderOptions, ExecutionProvider, ModelInfo};
pub use error::{ImageError, ModelError};
pub use image::{DecodeLimits, FaceCrop, CROP_SIZE};
