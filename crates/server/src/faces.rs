//! From caller images to embedded faces: decoding and detection (off the async
//! workers, a bounded number at once), alignment, the quality gate, then the
//! batching engine.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use vargid_model::{
    align, image as img, DecodeLimits, DetectedFace, Detector, FaceCrop, ImageError, Landmarks,
    CROP_SIZE,
};

pub use vargid_request::{ImageInput, ImageSource, Location};

use crate::engine::{Engine, EngineError};
use crate::metrics;

/// Where a face is in its image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
    pub landmarks: Option<Landmarks>,
}

impl FaceBox {
    pub fn area(&self) -> f32 {
        self.width * self.height
    }
}

/// Why a located face got no embedding (the quality gate).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("face is {size:.0} px across, below the minimum of {min} px")]
    TooSmall { size: f32, min: u32 },
    #[error("detector score {score:.2} is below the minimum of {min:.2}")]
    LowScore { score: f32, min: f32 },
    #[error("the landmarks are degenerate: no alignment exists")]
    Unalignable,
}

/// One face of an image and what became of it.
#[derive(Debug, Clone)]
pub struct FaceResult {
    pub face: FaceBox,
    pub embedding: Result<Vec<f32>, Rejection>,
}

/// Why one image could not be used at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageFault {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("landmarks: {0}")]
    Landmarks(String),
    #[error("face detection failed: {0}")]
    Detector(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The image at `index` of the request could not be used.
    #[error("image {index}: {fault}")]
    Image { index: usize, fault: ImageFault },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The quality gate and per-image bounds applied to detected faces.
#[derive(Debug, Clone, Copy)]
pub struct FaceRules {
    /// Shorter side of the face box, in pixels of the original image.
    pub min_face_size: u32,
    pub min_score: f32,
    /// Only this many faces (highest detector score first) are kept per image.
    pub max_faces_per_image: usize,
}

/// Detector sessions, one per decoding slot, so a slot never waits for another.
pub struct Detectors {
    free: Mutex<Vec<Detector>>,
    returned: Condvar,
}

impl Detectors {
    pub fn new(detectors: Vec<Detector>) -> Self {
        Self {
            free: Mutex::new(detectors),
            returned: Condvar::new(),
        }
    }

    /// Runs `f` on a free session (blocking; call from a blocking thread).
    fn with<R>(&self, f: impl FnOnce(&mut Detector) -> R) -> R {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let detector = loop {
            match free.pop() {
                Some(d) => break d,
                None => free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner()),
            }
        };
        drop(free);
        // The lease hands the session back even if `f` panics, so the pool never
        // shrinks and a later request never waits forever.
        let mut lease = Lease {
            pool: self,
            detector: Some(detector),
        };
        match lease.detector.as_mut() {
            Some(d) => f(d),
            None => unreachable!("a lease holds its detector until dropped"),
        }
    }
}

struct Lease<'a> {
    pool: &'a Detectors,
    detector: Option<Detector>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.detector.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(d);
            self.pool.returned.notify_one();
        }
    }
}

/// Everything `locate` needs; shared by all requests.
struct Locator {
    limits: DecodeLimits,
    detectors: Detectors,
    rules: FaceRules,
}

/// Shared by all handlers.
#[derive(Clone)]
pub struct FacePipeline {
    engine: Engine,
    locator: Arc<Locator>,
    decoders: Arc<Semaphore>,
}

/// A face ready for the model, or the reason it is not.
type Located = (FaceBox, Result<FaceCrop, Rejection>);

impl FacePipeline {
    /// `detectors` should hold `decode_threads` sessions: one per decoding slot.
    pub fn new(
        engine: Engine,
        limits: DecodeLimits,
        decode_threads: usize,
        detectors: Vec<Detector>,
        rules: FaceRules,
    ) -> Self {
        Self {
            engine,
            locator: Arc::new(Locator {
                limits,
                detectors: Detectors::new(detectors),
                rules,
            }),
            decoders: Arc::new(Semaphore::new(decode_threads.max(1))),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn rules(&self) -> &FaceRules {
        &self.locator.rules
    }

    /// The faces of each image, in request order; within an image, highest
    /// detector score first. Images are decoded and searched in parallel.
    /// `deadline` is what is left of the call's time: a call that cannot be served
    /// within it is refused before any work.
    pub async fn embed(
        &self,
        images: Vec<ImageInput>,
        deadline: Duration,
    ) -> Result<Vec<Vec<FaceResult>>, PipelineError> {
        let count = images.len();
        // Room for one face per image is reserved before any work; faces beyond that
        // (group photos) are queued if there is room, else the request is refused.
        let announced = self.engine.incoming(count, Some(deadline))?;
        // Dropping the set (on the first error) aborts the decodes still running.
        let mut decodes = JoinSet::new();
        for (index, image) in images.into_iter().enumerate() {
            let decoders = self.decoders.clone();
            let locator = self.locator.clone();
            decodes.spawn(async move {
                let located = match decoders.acquire_owned().await {
                    Ok(_slot) => tokio::task::spawn_blocking(move || locator.locate(image))
                        .await
                        .unwrap_or_else(|e| Err(ImageFault::Detector(format!("task failed: {e}")))),
                    Err(_) => Err(ImageFault::Detector("server is shutting down".into())),
                };
                (index, located)
            });
        }
        let mut located: Vec<Vec<Located>> = vec![Vec::new(); count];
        while let Some(joined) = decodes.join_next().await {
            let (index, result) = joined.map_err(|e| PipelineError::Image {
                index: 0,
                fault: ImageFault::Detector(format!("task failed: {e}")),
            })?;
            located[index] = result.map_err(|fault| PipelineError::Image { index, fault })?;
        }
        let mut crops = Vec::new();
        let verdicts: Vec<Vec<(FaceBox, Result<(), Rejection>)>> = located
            .into_iter()
            .map(|faces| {
                faces
                    .into_iter()
                    .map(|(face, crop)| (face, crop.map(|c| crops.push(c))))
                    .collect()
            })
            .collect();
        let mut embeddings = self.engine.embed(crops, announced).await?.into_iter();
        Ok(verdicts
            .into_iter()
            .map(|faces| {
                faces
                    .into_iter()
                    .map(|(face, verdict)| FaceResult {
                        face,
                        embedding: verdict.map(|()| embeddings.next().unwrap_or_default()),
                    })
                    .collect()
            })
            .collect())
    }
}

impl Locator {
    fn locate(&self, image: ImageInput) -> Result<Vec<Located>, ImageFault> {
        let rgb = match image.source {
            ImageSource::Encoded(bytes) => img::decode(&bytes, &self.limits)?,
            ImageSource::Raw { width, height, rgb } => {
                img::from_raw(width, height, rgb, &self.limits)?
            }
        };
        let (w, h) = rgb.dimensions();
        let is_crop = w == CROP_SIZE && h == CROP_SIZE;
        let location = match image.location {
            Location::Auto if is_crop => Location::Aligned,
            Location::Auto => Location::Detect,
            other => other,
        };
        match location {
            Location::Aligned => {
                let whole = FaceBox {
                    x: 0.0,
                    y: 0.0,
                    width: w as f32,
                    height: h as f32,
                    score: 1.0,
                    landmarks: None,
                };
                Ok(vec![(whole, Ok(FaceCrop::from_aligned(rgb)?))])
            }
            Location::Landmarks(points) => {
                // A face cut by the border has landmarks just outside the image (YuNet
                // reports them so); far outside is a caller's mistake.
                let (fw, fh) = (w as f32, h as f32);
                if let Some((i, p)) = points.iter().enumerate().find(|(_, p)| {
                    !(-fw..=2.0 * fw).contains(&p[0]) || !(-fh..=2.0 * fh).contains(&p[1])
                }) {
                    return Err(ImageFault::Landmarks(format!(
                        "point {i} ({}, {}) lies too far outside the {w}x{h} image",
                        p[0], p[1]
                    )));
                }
                let (x0, y0, x1, y1) = points.iter().fold(
                    (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
                    |(a, b, c, d), p| (a.min(p[0]), b.min(p[1]), c.max(p[0]), d.max(p[1])),
                );
                let face = FaceBox {
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                    score: 1.0,
                    landmarks: Some(points),
                };
                Ok(vec![(
                    face,
                    align(&rgb, &points).ok_or(Rejection::Unalignable),
                )])
            }
            Location::Auto | Location::Detect => {
                let started = Instant::now();
                let mut found = self
                    .detectors
                    .with(|d| d.detect(&rgb))
                    .map_err(|e| ImageFault::Detector(e.to_string()))?;
                metrics::detection(started.elapsed(), found.len());
                found.truncate(self.rules.max_faces_per_image);
                Ok(found
                    .into_iter()
                    .map(|f| {
                        let verdict = self
                            .gate(&f)
                            .and_then(|()| align(&rgb, &f.landmarks).ok_or(Rejection::Unalignable));
                        if let Err(reason) = &verdict {
                            metrics::face_rejected(reason);
                        }
                        (face_box(&f), verdict)
                    })
                    .collect())
            }
        }
    }

    fn gate(&self, face: &DetectedFace) -> Result<(), Rejection> {
        let size = face.bbox[2].min(face.bbox[3]);
        if size < self.rules.min_face_size as f32 {
            return Err(Rejection::TooSmall {
                size,
                min: self.rules.min_face_size,
            });
        }
        if face.score < self.rules.min_score {
            return Err(Rejection::LowScore {
                score: face.score,
                min: self.rules.min_score,
            });
        }
        Ok(())
    }
}

fn face_box(f: &DetectedFace) -> FaceBox {
    FaceBox {
        x: f.bbox[0],
        y: f.bbox[1],
        width: f.bbox[2],
        height: f.bbox[3],
        score: f.score,
        landmarks: Some(f.landmarks),
    }
}
