//! The service's detection and alignment (Rust) against the training pipeline's
//! (Python, `training/vargface`): same landmarks and the same 112x112 crop for the
//! same pixels. The model was trained and is evaluated on Python's crops, so the
//! service must produce them too.
//!
//! The JPEG is decoded once, here, and handed to Python as PNG, so both sides see
//! identical pixels (JPEG decoders may differ by a grey level or two).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::RgbImage;
use vargid_model::{align, DecodeLimits, Detector, DetectorOptions};

fn python() -> PathBuf {
    common::workspace_root().join(".venv/bin/python")
}

fn run_python(args: &[&str]) -> String {
    let out = Command::new(python())
        .args(args)
        .current_dir(common::workspace_root())
        .output()
        .expect("running the training venv's python (scripts/setup-python.sh)");
    assert!(
        out.status.success(),
        "python {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn detector() -> Detector {
    let path = common::workspace_root().join(".deps/models/yunet_2023mar_fp32.onnx");
    Detector::load(&path, DetectorOptions::default(), None).expect("detector")
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

fn decoded(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).expect("photo");
    vargid_model::image::decode(&bytes, &DecodeLimits::default()).expect("decodes")
}

#[test]
fn rust_and_python_find_the_same_landmarks_and_crop() {
    let dir = std::env::temp_dir().join(format!("vargid-align-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut detector = detector();
    // Every 400th photo: different people, poses and backgrounds.
    let photos: Vec<PathBuf> = common::lfw_photos()
        .into_iter()
        .step_by(400)
        .take(12)
        .collect();
    assert!(photos.len() >= 10, "LFW photos not found");
    let mut worst_crop: f64 = 0.0;
    let mut worst_landmark: f32 = 0.0;
    for (i, photo) in photos.iter().enumerate() {
        let rgb = decoded(photo);
        let png = dir.join(format!("{i}.png"));
        rgb.save(&png).unwrap();

        let faces = detector.detect(&rgb).expect("detect");
        let python_faces: serde_json::Value = serde_json::from_str(&run_python(&[
            "-m",
            "vargface.detect",
            "--image",
            png.to_str().unwrap(),
        ]))
        .expect("json");
        let python_faces = python_faces.as_array().expect("list");
        assert_eq!(
            faces.len(),
            python_faces.len(),
            "{}: face count",
            photo.display()
        );
        for (rust, py) in faces.iter().zip(python_faces) {
            for (n, p) in rust.landmarks.iter().enumerate() {
                for (k, v) in p.iter().enumerate() {
                    let want = py["landmarks"][n][k].as_f64().unwrap() as f32;
                    worst_landmark = worst_landmark.max((v - want).abs());
                }
            }
        }

        // The largest face, aligned by both from the same landmarks.
        let face = faces
            .iter()
            .max_by(|a, b| a.area().total_cmp(&b.area()))
            .expect("LFW photos show a face");
        let marks: Vec<String> = face
            .landmarks
            .iter()
            .flat_map(|p| [p[0].to_string(), p[1].to_string()])
            .collect();
        let py_crop = dir.join(format!("{i}.crop.png"));
        run_python(&[
            "-m",
            "vargface.align",
            "--image",
            png.to_str().unwrap(),
            "--landmarks",
            &marks.join(","),
            "--out",
            py_crop.to_str().unwrap(),
        ]);
        let python_crop = image::open(&py_crop).unwrap().into_rgb8();
        let rust_crop = align(&rgb, &face.landmarks).expect("alignable");
        let diff = mean_abs_diff(rust_crop.rgb(), python_crop.as_raw());
        eprintln!(
            "{}: {} faces, crop mean |diff| {diff:.4} grey levels",
            photo.display(),
            faces.len()
        );
        worst_crop = worst_crop.max(diff);
    }
    eprintln!(
        "worst crop mean |diff| {worst_crop:.4}, worst landmark |diff| {worst_landmark:.4} px"
    );
    assert!(
        worst_crop < 1.0,
        "crops differ by {worst_crop} grey levels on average"
    );
    assert!(
        worst_landmark < 0.05,
        "landmarks differ by up to {worst_landmark} px"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scaled_down_detection_matches_too() {
    // A photo larger than max_side (640) is detected on a scaled copy (triangle
    // filter in Rust, Pillow's bilinear in Python): the landmarks still agree to
    // within a pixel.
    let photo = &common::lfw_photos()[7];
    let small = decoded(photo);
    let big = image::imageops::resize(&small, 1000, 1000, image::imageops::FilterType::Triangle);
    let dir = std::env::temp_dir().join(format!("vargid-align-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("big.png");
    big.save(&png).unwrap();
    let faces = detector().detect(&big).expect("detect");
    let py: serde_json::Value = serde_json::from_str(&run_python(&[
        "-m",
        "vargface.detect",
        "--image",
        png.to_str().unwrap(),
    ]))
    .unwrap();
    let face = faces.first().expect("a face");
    let mut worst: f32 = 0.0;
    for (n, p) in face.landmarks.iter().enumerate() {
        for (k, v) in p.iter().enumerate() {
            worst = worst.max((v - py[0]["landmarks"][n][k].as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!("1000x1000 photo: landmark |diff| up to {worst:.3} px");
    assert!(worst < 1.5, "landmarks differ by {worst} px");
    let _ = std::fs::remove_dir_all(&dir);
}
