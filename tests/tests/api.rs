//! End-to-end: the real binary, real ONNX Runtime and FAISS, real gRPC clients.

mod common;

use common::expect_status;

use common::{encode, jpeg_image, lfw_crop, raw_image, Server};
use image::ImageFormat;
use tonic::Code;
use vargid_proto::v1 as pb;

const PEOPLE: [(&str, u32); 3] = [
    ("Ann_Veneman", 3),
    ("George_W_Bush", 7),
    ("Serena_Williams", 1),
];

fn png_image(img: &image::RgbImage) -> pb::Image {
    pb::Image {
        source: Some(pb::image::Source::Encoded(encode(img, ImageFormat::Png))),
        location: pb::FaceLocation::Aligned as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn enroll_identify_verify_delete_round_trip() {
    let server = Server::start(&[]);
    let mut client = server.client().await;

    // An empty gallery is a normal answer.
    let crops: Vec<_> = PEOPLE.iter().map(|(n, i)| lfw_crop(n, *i)).collect();
    let empty = client
        .identify(pb::IdentifyRequest {
            image: Some(jpeg_image(&crops[0])),
            top_k: 3,
            threshold: None,
            ..Default::default()
        })
        .await
        .expect("identify on an empty gallery")
        .into_inner();
    assert_eq!(empty.faces.len(), 1);
    assert!(empty.faces[0].candidates.is_empty());

    for ((name, _), crop) in PEOPLE.iter().zip(&crops) {
        let reply = client
            .enroll(pb::EnrollRequest {
                identity_id: name.to_string(),
                images: vec![jpeg_image(crop)],
                display_name: name.replace('_', " "),
                metadata: [("source".to_string(), "lfw".to_string())].into(),
                ..Default::default()
            })
            .await
            .expect("enroll")
            .into_inner();
        assert!(reply.created);
        assert_eq!(reply.face_ids.len(), 1);
        assert_eq!(reply.face_count, 1);
    }

    // Each identity comes back at rank 1 from a losslessly sent copy of its crop.
    for ((name, _), crop) in PEOPLE.iter().zip(&crops) {
        let reply = client
            .identify(pb::IdentifyRequest {
                image: Some(png_image(crop)),
                top_k: 3,
                threshold: None,
                ..Default::default()
            })
            .await
            .expect("identify")
            .into_inner();
        let candidates = &reply.faces[0].candidates;
        assert_eq!(candidates.len(), 3, "three identities enrolled");
        assert_eq!(candidates[0].identity_id, *name);
        assert_eq!(candidates[0].display_name, name.replace('_', " "));
        // Enrolled as JPEG, probed losslessly: compression noise keeps it below 1.
        assert!(candidates[0].score > 0.8, "score {}", candidates[0].score);
        assert!(candidates[0].is_match);
        assert!(candidates[0].score >= candidates[1].score);
    }

    // Verify against an identity and against a second image.
    let same = client
        .verify(pb::VerifyRequest {
            probe: Some(raw_image(&crops[1])),
            reference: Some(pb::verify_request::Reference::IdentityId(
                PEOPLE[1].0.into(),
            )),
            threshold: None,
            ..Default::default()
        })
        .await
        .expect("verify against identity")
        .into_inner();
    assert!(same.is_match && same.score > 0.8, "{same:?}");
    let pair = client
        .verify(pb::VerifyRequest {
            probe: Some(raw_image(&crops[0])),
            reference: Some(pb::verify_request::Reference::Image(raw_image(&crops[0]))),
            threshold: Some(0.5),
            ..Default::default()
        })
        .await
        .expect("verify two images")
        .into_inner();
    assert!((pair.score - 1.0).abs() < 1e-4 && pair.is_match && pair.threshold == 0.5);

    // Get, list, delete, and the identity is gone.
    let got = client
        .get_identity(pb::GetIdentityRequest {
            identity_id: PEOPLE[2].0.into(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.metadata.get("source").map(String::as_str), Some("lfw"));
    let page = client
        .list_identities(pb::ListIdentitiesRequest {
            page_size: 2,
            page_token: String::new(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.total_size, 3);
    assert_eq!(page.identities.len(), 2);
    let rest = client
        .list_identities(pb::ListIdentitiesRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("list page 2")
        .into_inner();
    assert_eq!(rest.identities.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let deleted = client
        .delete_identity(pb::DeleteIdentityRequest {
            identity_id: PEOPLE[0].0.into(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted_faces, 1);
    let after = client
        .identify(pb::IdentifyRequest {
            image: Some(png_image(&crops[0])),
            top_k: 5,
            threshold: None,
            ..Default::default()
        })
        .await
        .expect("identify after delete")
        .into_inner();
    assert_eq!(after.faces[0].candidates.len(), 2);
    assert!(after.faces[0]
        .candidates
        .iter()
        .all(|c| c.identity_id != PEOPLE[0].0));
    let gone = client
        .get_identity(pb::GetIdentityRequest {
            identity_id: PEOPLE[0].0.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.model_name, "vargfacenet");
    assert_eq!(info.embedding_size as usize, common::model_embedding_size());
    // "auto" (tests/tests/openvino.rs checks its choice).
    assert!(
        ["CPU", "OpenVINO"].contains(&info.execution_provider.as_str()),
        "{}",
        info.execution_provider
    );
    assert_eq!((info.gallery_size, info.identity_count), (2, 2));
}

#[tokio::test]
async fn embed_returns_unit_vectors_for_each_image() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    let a = lfw_crop("Ann_Veneman", 3);
    let b = lfw_crop("Serena_Williams", 1);
    let reply = client
        .embed(pb::EmbedRequest {
            images: vec![jpeg_image(&a), raw_image(&b), png_image(&a), raw_image(&a)],
        })
        .await
        .expect("embed")
        .into_inner();
    assert_eq!(reply.images.len(), 4);
    let vecs: Vec<&Vec<f32>> = reply.images.iter().map(|i| &i.faces[0].embedding).collect();
    for v in &vecs {
        assert_eq!(v.len(), common::model_embedding_size());
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let box_ = reply.images[0].faces[0]
        .face
        .as_ref()
        .and_then(|f| f.r#box.as_ref())
        .unwrap();
    assert_eq!((box_.width, box_.height), (112.0, 112.0));
    let cos = |x: &Vec<f32>, y: &Vec<f32>| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    assert!(
        cos(vecs[2], vecs[3]) > 0.9999,
        "PNG and raw pixels of one crop are the same input"
    );
    assert!(
        cos(vecs[0], vecs[2]) > 0.8,
        "JPEG and PNG of one crop are close"
    );
    assert!(
        cos(vecs[0], vecs[1]) < cos(vecs[0], vecs[2]),
        "another person is further"
    );
}

/// Asserts a failed call's code and that its message names each of `words`.

#[tokio::test]
async fn bad_input_gets_precise_statuses_and_the_server_keeps_serving() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    let crop = lfw_crop("Ann_Veneman", 3);

    // Corrupt bytes: not an image at all, and a JPEG cut short.
    let garbage = pb::Image {
        source: Some(pb::image::Source::Encoded(
            b"\x00\x01garbage bytes".to_vec(),
        )),
        ..Default::default()
    };
    expect_status(
        client
            .enroll(pb::EnrollRequest {
                identity_id: "x".into(),
                images: vec![jpeg_image(&crop), garbage],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["images[1]", "unsupported image format"],
    );
    let png = encode(&crop, ImageFormat::Png);
    let truncated = pb::Image {
        source: Some(pb::image::Source::Encoded(png[..png.len() / 3].to_vec())),
        ..Default::default()
    };
    expect_status(
        client
            .embed(pb::EmbedRequest {
                images: vec![truncated],
            })
            .await,
        Code::InvalidArgument,
        &["images[0]", "cannot decode image"],
    );
    // The failed enrollment left nothing behind.
    common::expect_absent(&mut client, "x").await;

    // Raw pixels of the wrong size.
    let short_raw = pb::Image {
        source: Some(pb::image::Source::Raw(pb::RawImage {
            width: 112,
            height: 112,
            rgb: vec![0; 1000],
        })),
        ..Default::default()
    };
    expect_status(
        client
            .identify(pb::IdentifyRequest {
                image: Some(short_raw),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["image:", "1000 bytes", "112x112"],
    );
    // An aligned crop of the wrong size.
    let big = image::RgbImage::new(200, 150);
    let mut wrong_size = raw_image(&big);
    wrong_size.location = pb::FaceLocation::Aligned as i32;
    expect_status(
        client
            .embed(pb::EmbedRequest {
                images: vec![wrong_size],
            })
            .await,
        Code::InvalidArgument,
        &["images[0]", "112x112", "200x150"],
    );

    // Empty identity id, missing images, missing image source.
    expect_status(
        client
            .enroll(pb::EnrollRequest {
                identity_id: String::new(),
                images: vec![jpeg_image(&crop)],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["identity_id", "empty"],
    );
    expect_status(
        client
            .enroll(pb::EnrollRequest {
                identity_id: "y".into(),
                images: vec![],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["images", "at least one"],
    );
    expect_status(
        client
            .identify(pb::IdentifyRequest {
                image: Some(pb::Image::default()),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["image", "encoded", "raw"],
    );

    // Unknown identity.
    expect_status(
        client
            .delete_identity(pb::DeleteIdentityRequest {
                identity_id: "nobody".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["nobody"],
    );
    expect_status(
        client
            .verify(pb::VerifyRequest {
                probe: Some(jpeg_image(&crop)),
                reference: Some(pb::verify_request::Reference::IdentityId("nobody".into())),
                threshold: None,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["nobody"],
    );
    expect_status(
        client
            .identify(pb::IdentifyRequest {
                image: Some(jpeg_image(&crop)),
                top_k: 100_000,
                threshold: None,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["top_k"],
    );
    expect_status(
        client
            .list_identities(pb::ListIdentitiesRequest {
                page_size: 10,
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["page_token"],
    );

    // Still serving.
    let ok = client
        .embed(pb::EmbedRequest {
            images: vec![jpeg_image(&crop)],
        })
        .await
        .expect("embed after bad input");
    assert_eq!(
        ok.into_inner().images[0].faces[0].embedding.len(),
        common::model_embedding_size()
    );
    common::expect_serving(&server).await;
}
