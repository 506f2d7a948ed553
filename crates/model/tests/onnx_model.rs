//! The committed VarGFaceNet ONNX through the real ONNX Runtime.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vargid_model::{Embedder, EmbedderOptions, ExecutionProvider, FaceCrop, ModelError};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> PathBuf {
    root().join("models/vargfacenet.onnx")
}

#[derive(Deserialize)]
struct Reference {
    embedding_normalized: Vec<f32>,
}

/// The fixed input the Python side used: ((c*37 + y*11 + x*7) % 256) in NCHW.
fn pattern_input() -> Vec<f32> {
    let mut out = Vec::with_capacity(FaceCrop::TENSOR_LEN);
    for c in 0..3u32 {
        for y in 0..112u32 {
            for x in 0..112u32 {
                out.push(((c * 37 + y * 11 + x * 7) % 256) as f32);
            }
        }
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_the_pytorch_reference_embedding() {
    let json =
        std::fs::read_to_string(root().join("crates/model/tests/data/reference_embedding.json"))
            .expect("reference embedding written by `python -m vargface.reference`");
    let reference: Reference = serde_json::from_str(&json).expect("reference JSON");

    let mut embedder =
        Embedder::load(&model_path(), &EmbedderOptions::default()).expect("loading the model");
    let info = embedder.info().clone();
    assert_eq!(info.name, "vargfacenet");
    assert_eq!(info.embedding_size, reference.embedding_normalized.len());
    assert_eq!(info.execution_provider, "CPU");

    let input = pattern_input();
    let got = embedder.embed_tensor(&input).expect("inference");
    assert_eq!(got.len(), 1);
    let cos = cosine(&got[0], &reference.embedding_normalized);
    assert!(cos > 0.9999, "cosine to the PyTorch reference: {cos}");
    let norm: f32 = got[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
}

#[test]
fn batches_give_the_same_answers_as_single_runs() {
    let mut embedder =
        Embedder::load(&model_path(), &EmbedderOptions::default()).expect("loading the model");
    let one = pattern_input();
    let mut other = one.clone();
    other.iter_mut().for_each(|v| *v = 255.0 - *v);
    let batch: Vec<f32> = [one.clone(), other.clone(), one.clone()].concat();
    let together = embedder.embed_tensor(&batch).unwrap();
    let alone = embedder.embed_tensor(&other).unwrap();
    assert_eq!(together.len(), 3);
    assert!(cosine(&together[1], &alone[0]) > 0.99999);
    assert!(cosine(&together[0], &together[2]) > 0.99999);
    assert!(cosine(&together[0], &together[1]) < 0.9999);
}

#[test]
fn loading_errors_name_the_problem() {
    let missing =
        Embedder::load(Path::new("no/such/model.onnx"), &EmbedderOptions::default()).unwrap_err();
    assert!(matches!(missing, ModelError::Load { .. }), "{missing}");
    assert!(missing.to_string().contains("no/such/model.onnx"));

    let not_a_model = root().join("README.md");
    let err = Embedder::load(&not_a_model, &EmbedderOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::Load { .. }), "{err}");

    if !cfg!(feature = "cuda") {
        let cuda = EmbedderOptions {
            execution_provider: ExecutionProvider::Cuda { device_id: 0 },
            ..Default::default()
        };
        let err = Embedder::load(&model_path(), &cuda).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::ExecutionProvider {
                    provider: "CUDA",
                    ..
                }
            ),
            "{err}"
        );
    }
}

fn crop_of(f: impl Fn(u32, u32) -> [u8; 3]) -> FaceCrop {
    let img = image::RgbImage::from_fn(112, 112, |x, y| image::Rgb(f(x, y)));
    FaceCrop::from_aligned(img).expect("a 112x112 crop")
}

#[test]
fn a_model_with_a_fixed_batch_of_one_runs_each_face_on_its_own() {
    // tests/data/fixed_batch_model.py: input [1, 3, 112, 112], output the channel means.
    let path = root().join("crates/model/tests/data/fixed_batch_1.onnx");
    let mut embedder = Embedder::load(&path, &EmbedderOptions::default()).expect("loading");
    assert_eq!(embedder.info().fixed_batch, Some(1));
    let colours = [[200, 10, 10], [10, 200, 10], [10, 10, 200], [90, 90, 0]];
    let crops: Vec<FaceCrop> = colours.iter().map(|c| crop_of(|_, _| *c)).collect();
    let got = embedder
        .embed(&crops.iter().collect::<Vec<_>>())
        .expect("four faces");
    assert_eq!(got.len(), 4);
    for (colour, embedding) in colours.iter().zip(&got) {
        let want: Vec<f32> = colour.iter().map(|&v| f32::from(v)).collect();
        assert!(
            cosine(embedding, &want) > 0.99999,
            "{embedding:?} for {colour:?}"
        );
    }
}

#[test]
fn flip_test_sums_the_crop_and_its_mirror() {
    let plain_options = EmbedderOptions::default();
    let flip_options = EmbedderOptions {
        flip_test: true,
        ..Default::default()
    };
    let mut plain = Embedder::load(&model_path(), &plain_options).expect("loading");
    let mut flip = Embedder::load(&model_path(), &flip_options).expect("loading");
    assert!(
        flip.info().version.ends_with("+flip"),
        "{}",
        flip.info().version
    );
    assert_eq!(plain.info().name, flip.info().name);
    let crop = crop_of(|x, y| [(x * 2) as u8, (y * 2) as u8, ((x * y) % 251) as u8]);
    let mirror = crop_of(|x, y| {
        [
            ((111 - x) * 2) as u8,
            (y * 2) as u8,
            (((111 - x) * y) % 251) as u8,
        ]
    });
    let both = plain.embed(&[&crop, &mirror]).expect("plain");
    let sum: Vec<f32> = both[0].iter().zip(&both[1]).map(|(a, b)| a + b).collect();
    let flipped = flip.embed(&[&crop, &mirror]).expect("flip");
    assert!(cosine(&flipped[0], &sum) > 0.99999);
    // A face and its mirror image have one flip-test embedding.
    assert!(cosine(&flipped[0], &flipped[1]) > 0.99999);
    assert!(
        cosine(&both[0], &both[1]) < 0.9999,
        "the pattern is not symmetric"
    );
}

/// On the CUDA provider (`--features cuda`, and `VARGID_TEST_CUDA=1` on a machine with
/// an NVIDIA GPU: scripts/gpu-check.sh sets both): the provider that runs is CUDA, and
/// its embeddings match the PyTorch reference and the CPU's at every batch size.
/// Elsewhere it says why it did not run.
#[test]
fn the_cuda_provider_matches_the_cpu() {
    if !cfg!(feature = "cuda") || std::env::var("VARGID_TEST_CUDA").as_deref() != Ok("1") {
        eprintln!("not run: needs --features cuda and VARGID_TEST_CUDA=1 (a GPU machine)");
        return;
    }
    let cuda = EmbedderOptions {
        execution_provider: ExecutionProvider::Cuda { device_id: 0 },
        ..Default::default()
    };
    let mut gpu = Embedder::load(&model_path(), &cuda).expect("the CUDA provider registers");
    assert_eq!(gpu.info().execution_provider, "CUDA");
    let mut cpu = Embedder::load(&model_path(), &EmbedderOptions::default()).expect("CPU");
    let json =
        std::fs::read_to_string(root().join("crates/model/tests/data/reference_embedding.json"))
            .expect("reference embedding");
    let reference: Reference = serde_json::from_str(&json).expect("reference JSON");
    let single = gpu.embed_tensor(&pattern_input()).expect("CUDA inference");
    let cos = cosine(&single[0], &reference.embedding_normalized);
    assert!(cos > 0.9999, "CUDA cosine to the PyTorch reference: {cos}");
    for batch in [1usize, 7, 64, 256] {
        let crops: Vec<FaceCrop> = (0..batch)
            .map(|i| crop_of(move |x, y| [(x * 2 + i as u32) as u8, (y * 3) as u8, (x + y) as u8]))
            .collect();
        let refs: Vec<&FaceCrop> = crops.iter().collect();
        let on_gpu = gpu.embed(&refs).expect("CUDA batch");
        let on_cpu = cpu.embed(&refs).expect("CPU batch");
        for (g, c) in on_gpu.iter().zip(&on_cpu) {
            let cos = cosine(g, c);
            assert!(cos > 0.9999, "batch {batch}: CUDA vs CPU cosine {cos}");
        }
    }
}
