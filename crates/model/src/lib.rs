//! The face embedding model: decoding face images into model input and running the
//! VarGFaceNet ONNX graph through ONNX Runtime.
//!
//! - [`image`]: encoded or raw images to 112x112 RGB face crops, with size limits.
//! - [`runtime`]: loading the ONNX Runtime shared library once per process.
//! - [`embedder`]: one inference session; batches of crops to L2-normalised embeddings.
//! - [`detector`]: YuNet face detection (boxes, five landmarks, scores).
//! - [`align`]: the similarity transform to the 112x112 template and the warp.

pub mod align;
pub mod detector;
pub mod embedder;
pub mod error;
pub mod image;
pub mod runtime;

pub use align::{align, Landmarks, ARCFACE_TEMPLATE};
pub use detector::{DetectedFace, Detector, DetectorOptions};
pub use embedder::{Embedder, EmbedderOptions, ExecutionProvider, ModelInfo};
pub use error::{ImageError, ModelError};
pub use image::{DecodeLimits, FaceCrop, CROP_SIZE};
