//! The model settings end to end: the SFace teacher as the documented alternative
//! `model.path`, and test-time flip (`model.flip_test`).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{
    cosine, expect_status, first_face_embeddings, lfw_photos, raw_image, workspace_root, Server,
};
use image::{imageops, RgbImage};
use tonic::transport::Channel;
use tonic::Code;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

/// Written by `scripts/prepare-models.sh` (part of `make deps`).
fn sface() -> PathBuf {
    let path = workspace_root().join(".deps/models/sface_2021dec_fp32.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

fn encoded(path: &std::path::Path) -> pb::Image {
    pb::Image {
        source: Some(pb::image::Source::Encoded(
            std::fs::read(path).expect("photo"),
        )),
        ..Default::default()
    }
}

/// The first `n` LFW people (by name) with at least two photos: their first and second.
fn people_with_two_photos(n: usize) -> Vec<(String, PathBuf, PathBuf)> {
    let mut by_person: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for photo in lfw_photos() {
        let person = photo
            .parent()
            .and_then(|p| p.file_name())
            .map(|p| p.to_string_lossy().into_owned())
            .expect("images/<person>/<photo>");
        by_person.entry(person).or_default().push(photo);
    }
    by_person
        .into_iter()
        .filter(|(_, photos)| photos.len() >= 2)
        .take(n)
        .map(|(person, photos)| (person, photos[0].clone(), photos[1].clone()))
        .collect()
}

#[tokio::test]
async fn sface_serves_as_the_alternative_model_with_its_own_tag() {
    let model = sface();
    let server = Server::start(&[("VARGID_MODEL__PATH", model.to_str().expect("utf-8 path"))]);
    let mut client = server.client().await;
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    // SFace's ONNX carries no metadata: it is tagged by file name and content digest.
    assert_eq!(info.model_name, "sface_2021dec_fp32");
    assert!(
        info.model_version.starts_with("sha256:") && info.model_version.len() == 19,
        "{}",
        info.model_version
    );
    assert_eq!(info.embedding_size, 128);

    // 1:N on whole photos: enroll each person's first photo, search with the second.
    let people = people_with_two_photos(20);
    for (person, first, _) in &people {
        client
            .enroll(pb::EnrollRequest {
                identity_id: person.clone(),
                images: vec![encoded(first)],
                use_largest_face: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("enroll {person}: {e}"));
    }
    let mut right = 0;
    for (person, _, second) in &people {
        let found = client
            .identify(pb::IdentifyRequest {
                image: Some(encoded(second)),
                top_k: 1,
                ..Default::default()
            })
            .await
            .expect("identify")
            .into_inner();
        let best = found
            .faces
            .iter()
            .filter_map(|f| f.candidates.first())
            .max_by(|a, b| a.score.total_cmp(&b.score));
        right += usize::from(best.is_some_and(|c| &c.identity_id == person));
    }
    // The teacher's LFW 1:N rank-1 is about 98% (models/vargfacenet.md).
    assert!(right >= 18, "{right} of {} at rank 1", people.len());
}

async fn embed(client: &mut FaceServiceClient<Channel>, crops: &[&RgbImage]) -> Vec<Vec<f32>> {
    first_face_embeddings(client, crops.iter().map(|c| raw_image(c)).collect()).await
}

#[tokio::test]
async fn flip_test_embeds_the_crop_and_its_mirror_and_tags_the_gallery() {
    let photos = people_with_two_photos(1);
    let crop = common::lfw_crop_at(&photos[0].1);
    let mirror: RgbImage = imageops::flip_horizontal(&crop);

    let data = common::tempfile_dir::TempDir::new("flip");
    let plain_server = Server::start_in(&data.0, &[]);
    let mut plain = plain_server.client().await;
    let both = embed(&mut plain, &[&crop, &mirror]).await;
    plain
        .enroll(pb::EnrollRequest {
            identity_id: "no-flip".into(),
            images: vec![raw_image(&crop)],
            ..Default::default()
        })
        .await
        .expect("enroll without the flip");
    let plain_version = plain
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("info")
        .into_inner()
        .model_version;
    drop(plain);
    drop(plain_server);

    let flip_server = Server::start_in(&data.0, &[("VARGID_MODEL__FLIP_TEST", "true")]);
    let mut flip = flip_server.client().await;
    let info = flip
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.model_version, format!("{plain_version}+flip"));
    let flipped = embed(&mut flip, &[&crop, &mirror]).await;
    let sum: Vec<f32> = both[0].iter().zip(&both[1]).map(|(a, b)| a + b).collect();
    assert!(cosine(&flipped[0], &sum) > 0.9999);
    assert!(cosine(&flipped[0], &flipped[1]) > 0.9999);

    // The gallery made without the flip refuses templates made with it.
    expect_status(
        flip.enroll(pb::EnrollRequest {
            identity_id: "with-flip".into(),
            images: vec![raw_image(&crop)],
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        &["+flip"],
    );
}
