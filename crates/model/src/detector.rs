//! YuNet face detection through ONNX Runtime: boxes, five landmarks and a score.
//!
//! The steps match OpenCV's `FaceDetectorYN`, for which YuNet was published, and
//! `training/vargface/detect.py`, which prepares the training and evaluation crops:
//! scale down to `max_side` if larger (triangle filter), BGR 0..255 zero-padded to
//! multiples of 32, decode the three strides, greedy NMS.
//!
//! The graph takes one image of any size, so detection is not batched across
//! requests: images differ in size, and at a few milliseconds per photo it costs a
//! fraction of one embedding.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use crate::align::Landmarks;
use crate::error::ModelError;
use crate::runtime;

const STRIDES: [usize; 3] = [8, 16, 32];

/// Detector settings; the defaults are the ones the LFW figures were measured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorOptions {
    /// Candidates scoring below this are not faces at all.
    pub score_threshold: f32,
    /// Overlapping candidates above this IoU are merged into the best one.
    pub nms_threshold: f32,
    /// Longer image side the detector sees; larger photos are scaled down for it.
    pub max_side: u32,
    /// At most this many candidates enter NMS.
    pub top_k: usize,
    /// ONNX Runtime intra-op threads per detector session.
    pub intra_op_threads: usize,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.5,
            nms_threshold: 0.3,
            max_side: 640,
            top_k: 5000,
            intra_op_threads: 1,
        }
    }
}

/// One face found in an image, in that image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedFace {
    /// x, y (top-left), width, height.
    pub bbox: [f32; 4],
    pub landmarks: Landmarks,
    pub score: f32,
}

impl DetectedFace {
    pub fn area(&self) -> f32 {
        self.bbox[2] * self.bbox[3]
    }
}

/// One detector session; run through `&mut self` like the embedder.
pub struct Detector {
    session: Session,
    options: DetectorOptions,
    input: Vec<f32>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("options", &self.options)
            .finish()
    }
}

impl Detector {
    /// Loads the fp32 YuNet model written by `python -m vargface.thirdparty`.
    pub fn load(
        path: &Path,
        options: DetectorOptions,
        onnxruntime_library: Option<&Path>,
    ) -> Result<Self, ModelError> {
        let env = runtime::environment(onnxruntime_library)?;
        let load_err = |reason: String| ModelError::Load {
            path: path.display().to_string(),
            reason,
        };
        if !path.is_file() {
            return Err(load_err(
                "no such file (run scripts/install-deps.sh, which prepares the detector)".into(),
            ));
        }
        // Spinning is ONNX Runtime's default, kept as it was.
        let session = runtime::session_builder(env, path, options.intra_op_threads, true)?
            .commit_from_file(path)
            .map_err(|e| load_err(e.to_string()))?;
        let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        for stride in STRIDES {
            for head in ["cls", "obj", "bbox", "kps"] {
                let name = format!("{head}_{stride}");
                if !names.contains(&name.as_str()) {
                    return Err(ModelError::Incompatible {
                        path: path.display().to_string(),
                        reason: format!("not a YuNet detector: no output {name}"),
                    });
                }
            }
        }
        Ok(Self {
            session,
            options,
            input: Vec::new(),
        })
    }

    pub fn options(&self) -> &DetectorOptions {
        &self.options
    }

    /// Every face in `image`, highest score first.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<DetectedFace>, ModelError> {
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Ok(Vec::new());
        }
        let (w, h, pad_w, pad_h) = input_planes(image, self.options.max_side, &mut self.input);
        let tensor = TensorRef::from_array_view(([1, 3, pad_h, pad_w], self.input.as_slice()))
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => tensor])
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let mut candidates = Vec::new();
        for stride in STRIDES {
            let get = |head: &str, per: usize| -> Result<&[f32], ModelError> {
                let (_, data) = outputs[format!("{head}_{stride}").as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| ModelError::Inference(e.to_string()))?;
                let cells = (pad_w / stride) * (pad_h / stride);
                if data.len() != cells * per {
                    return Err(ModelError::Inference(format!(
                        "{head}_{stride}: {} values for {cells} cells",
                        data.len()
                    )));
                }
                Ok(data)
            };
            let (cls, obj) = (get("cls", 1)?, get("obj", 1)?);
            let (bbox, kps) = (get("bbox", 4)?, get("kps", 10)?);
            decode_stride(
                stride,
                pad_w / stride,
                [cls, obj, bbox, kps],
                self.options.score_threshold,
                &mut candidates,
            );
        }
        let (sx, sy) = (width as f32 / w as f32, height as f32 / h as f32);
        let mut faces = nms(candidates, self.options.nms_threshold, self.options.top_k);
        for face in &mut faces {
            face.bbox = [
                face.bbox[0] * sx,
                face.bbox[1] * sy,
                face.bbox[2] * sx,
                face.bbox[3] * sy,
            ];
            for p in &mut face.landmarks {
                *p = [p[0] * sx, p[1] * sy];
            }
        }
        Ok(faces)
    }
}

/// The detector's input for `image` (not empty): scaled so that its longest side is at
/// most `max_side`, as BGR float planes zero-padded to multiples of 32, written into
/// `input`. Returns (width, height) of the scaled image and (width, height) of the
/// padded planes.
pub fn input_planes(
    image: &RgbImage,
    max_side: u32,
    input: &mut Vec<f32>,
) -> (usize, usize, usize, usize) {
    let (width, height) = image.dimensions();
    let longest = width.max(height);
    let scaled;
    let work = if longest > max_side {
        let scale = f64::from(max_side) / f64::from(longest);
        let w = ((f64::from(width) * scale).round() as u32).max(1);
        let h = ((f64::from(height) * scale).round() as u32).max(1);
        scaled = imageops::resize(image, w, h, FilterType::Triangle);
        &scaled
    } else {
        image
    };
    let (w, h) = (work.width() as usize, work.height() as usize);
    let (pad_w, pad_h) = (w.div_ceil(32) * 32, h.div_ceil(32) * 32);
    let plane = pad_w * pad_h;
    input.clear();
    input.resize(3 * plane, 0.0);
    for (y, row) in work.as_raw().chunks_exact(w * 3).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let i = y * pad_w + x;
            // BGR planes.
            input[i] = f32::from(px[2]);
            input[plane + i] = f32::from(px[1]);
            input[2 * plane + i] = f32::from(px[0]);
        }
    }
    (w, h, pad_w, pad_h)
}

/// Candidates of one stride: score = sqrt(cls * obj), anchor-free offsets per cell.
fn decode_stride(
    stride: usize,
    cols: usize,
    [cls, obj, bbox, kps]: [&[f32]; 4],
    threshold: f32,
    out: &mut Vec<DetectedFace>,
) {
    let s = stride as f32;
    for idx in 0..cls.len() {
        let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
        if score < threshold || !score.is_finite() {
            continue;
        }
        let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
        let b = &bbox[idx * 4..idx * 4 + 4];
        let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
        let (w, h) = (b[2].exp() * s, b[3].exp() * s);
        let k = &kps[idx * 10..idx * 10 + 10];
        let mut landmarks = [[0.0; 2]; 5];
        for (n, p) in landmarks.iter_mut().enumerate() {
            *p = [(k[2 * n] + c) * s, (k[2 * n + 1] + r) * s];
        }
        if !(w.is_finite() && h.is_finite()) {
            continue;
        }
        out.push(DetectedFace {
            bbox: [cx - w / 2.0, cy - h / 2.0, w, h],
            landmarks,
            score,
        });
    }
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let x1 = a[0].max(b[0]);
    let y1 = a[1].max(b[1]);
    let x2 = (a[0] + a[2]).min(b[0] + b[2]);
    let y2 = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy non-maximum suppression, best score first (stable for ties).
fn nms(mut candidates: Vec<DetectedFace>, threshold: f32, top_k: usize) -> Vec<DetectedFace> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(top_k);
    let mut kept: Vec<DetectedFace> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| iou(&k.bbox, &c.bbox) <= threshold) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, score: f32) -> DetectedFace {
        DetectedFace {
            bbox: [x, 0.0, 10.0, 10.0],
            landmarks: [[0.0; 2]; 5],
            score,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(
            vec![face(0.0, 0.6), face(1.0, 0.9), face(50.0, 0.7)],
            0.3,
            10,
        );
        let xs: Vec<f32> = kept.iter().map(|f| f.bbox[0]).collect();
        assert_eq!(xs, vec![1.0, 50.0]);
    }

    #[test]
    fn decodes_cell_offsets() {
        // One cell at row 1, column 2 of a 4-column grid at stride 8.
        let idx = 4 + 2;
        let mut cls = vec![0.0; 8];
        let mut obj = vec![0.0; 8];
        cls[idx] = 0.81;
        obj[idx] = 1.0;
        let mut bbox = vec![0.0; 32];
        bbox[idx * 4..idx * 4 + 4].copy_from_slice(&[0.5, 0.5, 0.0, 0.0]);
        let kps = vec![0.25; 80];
        let mut out = Vec::new();
        decode_stride(8, 4, [&cls, &obj, &bbox, &kps], 0.5, &mut out);
        assert_eq!(out.len(), 1);
        let f = out[0];
        assert!((f.score - 0.9).abs() < 1e-6);
        assert_eq!(f.bbox, [16.0, 8.0, 8.0, 8.0]);
        assert_eq!(f.landmarks[0], [18.0, 10.0]);
    }
}
