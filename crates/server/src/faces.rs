//! From caller images to embedded faces: decoding (off the async workers, a bounded
//! number at once), locating the face, then the batching engine.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use vargid_model::{image as img, DecodeLimits, FaceCrop, ImageError, CROP_SIZE};

use crate::engine::{Engine, EngineError};

/// Pixels of one image as sent by a caller.
#[derive(Debug, Clone)]
pub enum ImageSource {
    Encoded(Vec<u8>),
    Raw {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
}

/// How to find the faces in an image (see `FaceLocation` in the proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Auto,
    Aligned,
    Detect,
    Landmarks,
}

#[derive(Debug, Clone)]
pub struct ImageInput {
    pub source: ImageSource,
    pub location: Location,
}

/// Where a face is in its image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

#[derive(Debug, Clone)]
pub struct EmbeddedFace {
    pub face: FaceBox,
    pub embedding: Vec<f32>,
}

/// Why one image yielded no face.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageFault {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("face detection is not available in this version: send a {CROP_SIZE}x{CROP_SIZE} aligned face crop (location FACE_LOCATION_ALIGNED or AUTO)")]
    DetectionUnavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The image at `index` of the request could not be used.
    #[error("image {index}: {fault}")]
    Image { index: usize, fault: ImageFault },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Shared by all handlers.
#[derive(Clone)]
pub struct FacePipeline {
    engine: Engine,
    limits: DecodeLimits,
    decoders: Arc<Semaphore>,
}

impl FacePipeline {
    pub fn new(engine: Engine, limits: DecodeLimits, decode_threads: usize) -> Self {
        Self {
            engine,
            limits,
            decoders: Arc::new(Semaphore::new(decode_threads.max(1))),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The faces of each image, in request order. Images are decoded in parallel.
    pub async fn embed(
        &self,
        images: Vec<ImageInput>,
    ) -> Result<Vec<Vec<EmbeddedFace>>, PipelineError> {
        let count = images.len();
        let announced = self.engine.incoming(count)?;
        // Dropping the set (on the first error) aborts the decodes still running.
        let mut decodes = JoinSet::new();
        for (index, image) in images.into_iter().enumerate() {
            let decoders = self.decoders.clone();
            let limits = self.limits;
            decodes.spawn(async move {
                let located = match decoders.acquire_owned().await {
                    Ok(_slot) => tokio::task::spawn_blocking(move || locate(image, &limits))
                        .await
                        .unwrap_or_else(|e| Err(corrupt(format!("decoder failed: {e}")))),
                    Err(_) => Err(corrupt("server is shutting down".into())),
                };
                (index, located)
            });
        }
        let mut located: Vec<Option<(FaceBox, FaceCrop)>> = vec![None; count];
        while let Some(joined) = decodes.join_next().await {
            let (index, result) = joined.map_err(|e| PipelineError::Image {
                index: 0,
                fault: corrupt(format!("decoder failed: {e}")),
            })?;
            located[index] = Some(result.map_err(|fault| PipelineError::Image { index, fault })?);
        }
        let (faces, crops): (Vec<FaceBox>, Vec<FaceCrop>) = located.into_iter().flatten().unzip();
        let embeddings = self.engine.embed(crops, announced).await?;
        Ok(faces
            .into_iter()
            .zip(embeddings)
            .map(|(face, embedding)| vec![EmbeddedFace { face, embedding }])
            .collect())
    }
}

fn corrupt(reason: String) -> ImageFault {
    ImageFault::Image(ImageError::Corrupt(reason))
}

fn locate(image: ImageInput, limits: &DecodeLimits) -> Result<(FaceBox, FaceCrop), ImageFault> {
    if matches!(image.location, Location::Detect | Location::Landmarks) {
        return Err(ImageFault::DetectionUnavailable);
    }
    let rgb = match image.source {
        ImageSource::Encoded(bytes) => img::decode(&bytes, limits)?,
        ImageSource::Raw { width, height, rgb } => img::from_raw(width, height, rgb, limits)?,
    };
    let (w, h) = rgb.dimensions();
    let is_crop = w == CROP_SIZE && h == CROP_SIZE;
    if image.location == Location::Auto && !is_crop {
        return Err(ImageFault::DetectionUnavailable);
    }
    let crop = FaceCrop::from_aligned(rgb)?;
    let whole = FaceBox {
        x: 0.0,
        y: 0.0,
        width: w as f32,
        height: h as f32,
        score: 1.0,
    };
    Ok((whole, crop))
}
