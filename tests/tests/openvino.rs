//! `model.execution_provider = "openvino"` end to end: the server says it runs on
//! OpenVINO, its embeddings equal the CPU provider's (so a gallery enrolled on one is
//! served by the other), whole photos work, "auto" chooses by the CPU and says why,
//! and asking for OpenVINO with a library that lacks it stops the start with the
//! reason.

mod common;

use std::process::Command;

use common::{
    binary, cosine, first_face_embeddings, two_runtime_check_crops, workspace_root, Server,
};
use vargid_proto::v1 as pb;

/// Written by `scripts/install-ort-openvino.sh` (part of `make deps`).
fn openvino_library() -> std::path::PathBuf {
    let path = workspace_root().join(".deps/onnxruntime-openvino/libonnxruntime.so");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-ort-openvino.sh",
        path.display()
    );
    path
}

async fn embeddings(server: &Server, images: &[pb::Image]) -> Vec<Vec<f32>> {
    first_face_embeddings(&mut server.client().await, images.to_vec()).await
}

#[tokio::test]
async fn openvino_serves_the_cpu_providers_embeddings_and_galleries() {
    openvino_library();
    let crops = two_runtime_check_crops();
    let photo = pb::Image {
        source: Some(pb::image::Source::Encoded(
            std::fs::read(common::lfw_dir().join("images/Colin_Powell/Colin_Powell_0049.jpg"))
                .expect("an LFW photo"),
        )),
        ..Default::default()
    };

    let data = common::tempfile_dir::TempDir::new("openvino");
    let cpu_server = Server::start_in(&data.0, &[("VARGID_MODEL__EXECUTION_PROVIDER", "cpu")]);
    let on_cpu = embeddings(&cpu_server, &crops).await;
    let photo_on_cpu = whole_photo(&cpu_server, &photo).await;
    let mut cpu = cpu_server.client().await;
    cpu.enroll(pb::EnrollRequest {
        identity_id: "serena".into(),
        images: vec![crops[0].clone()],
        ..Default::default()
    })
    .await
    .expect("enroll on the CPU provider");
    drop(cpu);
    drop(cpu_server);

    let ov_server = Server::start_in(&data.0, &[("VARGID_MODEL__EXECUTION_PROVIDER", "openvino")]);
    let mut ov = ov_server.client().await;
    let info = ov
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.execution_provider, "OpenVINO");
    let on_ov = embeddings(&ov_server, &crops).await;
    for (i, (a, b)) in on_cpu.iter().zip(&on_ov).enumerate() {
        let c = cosine(a, b);
        assert!(
            c > 0.9999,
            "crop {i}: cosine {c} between the CPU and OpenVINO"
        );
    }
    // The gallery enrolled on the CPU provider is searched on OpenVINO.
    let found = ov
        .identify(pb::IdentifyRequest {
            image: Some(crops[1].clone()),
            ..Default::default()
        })
        .await
        .expect("identify")
        .into_inner();
    let best = &found.faces[0].candidates[0];
    assert_eq!(best.identity_id, "serena");
    assert!((best.score - cosine(&on_cpu[0], &on_cpu[1])).abs() < 1e-3);
    // Whole photos (YuNet stays on ONNX Runtime's CPU provider, of the OpenVINO build's
    // version): the same faces at the same landmarks, with the same embeddings.
    let photo_on_ov = whole_photo(&ov_server, &photo).await;
    assert!(photo_on_cpu.len() >= 2, "{photo_on_cpu:?}");
    assert_eq!(photo_on_cpu.len(), photo_on_ov.len());
    for (a, b) in photo_on_cpu.iter().zip(&photo_on_ov) {
        let marks = |f: &pb::FaceEmbedding| -> Vec<(f32, f32)> {
            let l = f
                .face
                .as_ref()
                .and_then(|f| f.landmarks.clone())
                .unwrap_or_default();
            l.points.iter().map(|p| (p.x, p.y)).collect()
        };
        for (p, q) in marks(a).iter().zip(&marks(b)) {
            assert!(
                (p.0 - q.0).abs() < 0.5 && (p.1 - q.1).abs() < 0.5,
                "{p:?} vs {q:?}"
            );
        }
        if !a.embedding.is_empty() {
            assert!(cosine(&a.embedding, &b.embedding) > 0.999);
        }
    }
}

async fn whole_photo(server: &Server, photo: &pb::Image) -> Vec<pb::FaceEmbedding> {
    let mut client = server.client().await;
    client
        .embed(pb::EmbedRequest {
            images: vec![photo.clone()],
        })
        .await
        .expect("embed a whole photo")
        .into_inner()
        .images
        .remove(0)
        .faces
}

/// The default, "auto": OpenVINO on a CPU with AVX-512 (where it was measured about 2x
/// the CPU provider), the CPU provider elsewhere; the log says which and why.
#[tokio::test]
async fn auto_chooses_by_the_cpu_and_says_why() {
    openvino_library();
    let mut server = Server::start(&[]);
    let line = server
        .wait_for_log("execution provider", std::time::Duration::from_secs(5))
        .expect("the choice is logged");
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    let expected = if avx512 { "OpenVINO" } else { "CPU" };
    assert!(line.contains("auto:") && line.contains("AVX-512"), "{line}");
    let info = server
        .client()
        .await
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.execution_provider, expected, "avx512f: {avx512}");
}

#[test]
fn openvino_with_a_library_without_it_fails_to_start_and_says_why() {
    let data = common::tempfile_dir::TempDir::new("openvino-missing");
    let cpu_library = workspace_root().join(".deps/onnxruntime/libonnxruntime.so");
    let out = Command::new(binary())
        .current_dir(workspace_root())
        .env("VARGID_SERVER__LISTEN", "127.0.0.1:0")
        .env("VARGID_METRICS__LISTEN", "")
        .env("VARGID_GALLERY__DATA_DIR", &data.0)
        .env("VARGID_MODEL__EXECUTION_PROVIDER", "openvino")
        .env("VARGID_MODEL__OPENVINO_LIBRARY", &cpu_library)
        .env("NO_COLOR", "1")
        .output()
        .expect("running vargid");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("OpenVINO") && text.contains("install-ort-openvino.sh"),
        "{text}"
    );
}
