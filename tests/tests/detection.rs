//! Whole photos through the running service: detection, alignment, one result per
//! face, the quality gate, caller landmarks, and hostile image input.

mod common;

use common::{encode, expect_status, lfw_dir, lfw_photos, Server};
use image::{imageops, ImageFormat, RgbImage};
use tonic::Code;
use vargid_proto::v1 as pb;

fn photo(name: &str, number: u32) -> Vec<u8> {
    std::fs::read(lfw_dir().join(format!("images/{name}/{name}_{number:04}.jpg"))).expect("photo")
}

fn encoded(bytes: Vec<u8>) -> pb::Image {
    pb::Image {
        source: Some(pb::image::Source::Encoded(bytes)),
        ..Default::default()
    }
}

/// `cols` x `rows` LFW photos side by side: a "group photo" whose faces we know.
fn mosaic(paths: &[std::path::PathBuf], cols: u32) -> RgbImage {
    let tile = 250;
    let rows = (paths.len() as u32).div_ceil(cols);
    let mut out = RgbImage::new(cols * tile, rows * tile);
    for (i, p) in paths.iter().enumerate() {
        let img = image::open(p).expect("photo").into_rgb8();
        let (x, y) = ((i as u32 % cols) * tile, (i as u32 / cols) * tile);
        imageops::replace(&mut out, &img, i64::from(x), i64::from(y));
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn group_photo_gives_one_result_per_face() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    // Eight different people, 1000x500: scaled to 640 wide for detection.
    let people: Vec<_> = lfw_photos().into_iter().step_by(900).take(8).collect();
    let group = mosaic(&people, 4);
    let group_png = encode(&group, ImageFormat::Png);
    let reply = client
        .embed(pb::EmbedRequest {
            images: vec![encoded(group_png.clone())],
        })
        .await
        .expect("embed")
        .into_inner();
    let faces = &reply.images[0].faces;
    assert_eq!(
        reply.images[0].no_face_reason,
        pb::NoFaceReason::Unspecified as i32
    );
    // Every tile's centred subject is found (background faces may add more).
    for tile in 0..8u32 {
        let (cx, cy) = (
            (tile % 4) as f32 * 250.0 + 125.0,
            (tile / 4) as f32 * 250.0 + 125.0,
        );
        let hit = faces.iter().find(|f| {
            let b = f.face.as_ref().unwrap().r#box.unwrap();
            (b.x + b.width / 2.0 - cx).abs() < 40.0 && (b.y + b.height / 2.0 - cy).abs() < 40.0
        });
        let hit = hit.unwrap_or_else(|| panic!("tile {tile}: no face near its centre: {faces:?}"));
        let face = hit.face.as_ref().unwrap();
        assert_eq!(face.landmarks.as_ref().unwrap().points.len(), 5);
        assert!(face.detector_score > 0.7, "{face:?}");
        assert_eq!(face.rejection, pb::FaceRejection::None as i32);
        assert_eq!(hit.embedding.len(), common::model_embedding_size());
        assert!((cosine(&hit.embedding, &hit.embedding) - 1.0).abs() < 1e-4);
    }
    // Sorted by detector score, best first.
    let scores: Vec<f32> = faces
        .iter()
        .map(|f| f.face.as_ref().unwrap().detector_score)
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // Identify answers per face too: people enrolled from their own photo are the
    // best candidates for their own tiles.
    let name = |i: usize| {
        people[i]
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    for (i, person) in people.iter().enumerate().take(2) {
        client
            .enroll(pb::EnrollRequest {
                identity_id: name(i),
                images: vec![encoded(std::fs::read(person).unwrap())],
                // LFW photos may show someone in the background too.
                use_largest_face: true,
                ..Default::default()
            })
            .await
            .expect("enroll a whole photo");
    }
    let found = client
        .identify(pb::IdentifyRequest {
            image: Some(encoded(group_png.clone())),
            top_k: 2,
            ..Default::default()
        })
        .await
        .expect("identify")
        .into_inner();
    assert_eq!(found.faces.len(), faces.len());
    for i in 0..2 {
        let tile = found
            .faces
            .iter()
            .find(|f| {
                let b = f.face.as_ref().unwrap().r#box.unwrap();
                let cx = b.x + b.width / 2.0;
                (i as f32 * 250.0..(i + 1) as f32 * 250.0).contains(&cx)
                    && b.y + b.height / 2.0 < 250.0
            })
            .expect("tile face");
        assert_eq!(tile.candidates[0].identity_id, name(i), "{tile:?}");
    }

    // Enroll refuses the group photo, saying why, unless asked for the largest face.
    expect_status(
        client
            .enroll(pb::EnrollRequest {
                identity_id: "group".into(),
                images: vec![encoded(group_png.clone())],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["images[0]", "usable faces found", "use_largest_face"],
    );
    client
        .enroll(pb::EnrollRequest {
            identity_id: "group".into(),
            images: vec![encoded(group_png.clone())],
            use_largest_face: true,
            ..Default::default()
        })
        .await
        .expect("largest-face policy");
}

#[tokio::test]
async fn photo_without_a_face_is_an_empty_answer_with_a_reason() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    // A smooth gradient: nothing face-like.
    let blank = RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, 128])
    });
    let image = encoded(encode(&blank, ImageFormat::Png));
    let embedded = client
        .embed(pb::EmbedRequest {
            images: vec![image.clone()],
        })
        .await
        .expect("embed answers")
        .into_inner();
    assert!(embedded.images[0].faces.is_empty());
    assert_eq!(
        embedded.images[0].no_face_reason,
        pb::NoFaceReason::NoneDetected as i32
    );
    let identified = client
        .identify(pb::IdentifyRequest {
            image: Some(image.clone()),
            ..Default::default()
        })
        .await
        .expect("identify answers")
        .into_inner();
    assert!(identified.faces.is_empty());
    assert_eq!(
        identified.no_face_reason,
        pb::NoFaceReason::NoneDetected as i32
    );
    expect_status(
        client
            .enroll(pb::EnrollRequest {
                identity_id: "nobody".into(),
                images: vec![encoded(photo("Ann_Veneman", 3)), image],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["images[1]", "no face found"],
    );
    // All-or-nothing: the good first image was not enrolled either.
    common::expect_absent(&mut client, "nobody").await;
}

#[tokio::test]
async fn quality_gate_reports_a_reason_per_face() {
    // Every LFW face (about 100 px) is below a 200 px minimum; then below a 0.999
    // minimum score.
    for (env, reason, words) in [
        (
            ("VARGID_DETECTION__MIN_FACE_SIZE", "200"),
            pb::FaceRejection::TooSmall,
            &["below the minimum of 200 px"][..],
        ),
        (
            ("VARGID_DETECTION__MIN_SCORE", "0.999"),
            pb::FaceRejection::LowDetectorScore,
            &["below the minimum of 1.00"][..],
        ),
    ] {
        let server = Server::start(&[env]);
        let mut client = server.client().await;
        let reply = client
            .embed(pb::EmbedRequest {
                images: vec![encoded(photo("George_W_Bush", 7))],
            })
            .await
            .expect("embed")
            .into_inner();
        let face = &reply.images[0].faces[0];
        let info = face.face.as_ref().unwrap();
        assert_eq!(info.rejection, reason as i32, "{info:?}");
        assert!(face.embedding.is_empty());
        for w in words {
            assert!(
                info.rejection_detail.contains(w),
                "{:?} lacks {w:?}",
                info.rejection_detail
            );
        }
        expect_status(
            client
                .enroll(pb::EnrollRequest {
                    identity_id: "gated".into(),
                    images: vec![encoded(photo("George_W_Bush", 7))],
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &["images[0]", "not usable", words[0]],
        );
    }
}

#[tokio::test]
async fn caller_landmarks_skip_detection_and_match_it() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    let bytes = photo("Serena_Williams", 1);
    let detected = client
        .embed(pb::EmbedRequest {
            images: vec![encoded(bytes.clone())],
        })
        .await
        .expect("embed")
        .into_inner();
    let main = detected.images[0]
        .faces
        .iter()
        .max_by(|a, b| {
            let area = |f: &pb::FaceEmbedding| {
                let b = f.face.as_ref().unwrap().r#box.unwrap();
                b.width * b.height
            };
            area(a).total_cmp(&area(b))
        })
        .unwrap();
    let landmarks = main.face.as_ref().unwrap().landmarks.clone();
    let given = pb::Image {
        source: Some(pb::image::Source::Encoded(bytes.clone())),
        location: pb::FaceLocation::Landmarks as i32,
        landmarks: landmarks.clone(),
    };
    let reply = client
        .embed(pb::EmbedRequest {
            images: vec![given],
        })
        .await
        .expect("embed with landmarks")
        .into_inner();
    let same = &reply.images[0].faces[0];
    assert_eq!(same.face.as_ref().unwrap().detector_score, 1.0);
    assert!(cosine(&same.embedding, &main.embedding) > 0.9999);

    // Four points, and a point outside the image, are refused precisely.
    let mut four = landmarks.clone().unwrap();
    four.points.pop();
    let mut outside = landmarks.unwrap();
    outside.points[2].x = 900.0;
    for (marks, words) in [
        (
            four,
            &["images[0].landmarks", "exactly 5 points", "got 4"][..],
        ),
        (
            outside,
            &["images[0]", "point 2", "too far outside the 250x250 image"][..],
        ),
    ] {
        expect_status(
            client
                .embed(pb::EmbedRequest {
                    images: vec![pb::Image {
                        source: Some(pb::image::Source::Encoded(bytes.clone())),
                        location: pb::FaceLocation::Landmarks as i32,
                        landmarks: Some(marks),
                    }],
                })
                .await,
            Code::InvalidArgument,
            words,
        );
    }
}

/// A small PNG (valid chunks and CRCs) whose header claims `width` x `height`.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    // A few bytes of zlib data stand in for the gigabytes the header promises.
    for (kind, data) in [
        (&b"IHDR"[..], ihdr),
        (&b"IDAT"[..], vec![0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]),
        (&b"IEND"[..], Vec::new()),
    ] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real JPEG whose frame header (SOF0) is rewritten to claim `side` x `side`.
fn jpeg_claiming(side: u16) -> Vec<u8> {
    let mut bytes = photo("Ann_Veneman", 3);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("baseline JPEG");
    // FFC0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&side.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&side.to_be_bytes());
    bytes
}

#[tokio::test]
async fn hostile_images_get_precise_errors_and_the_server_keeps_serving() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    let good = photo("Ann_Veneman", 3);
    let truncated = good[..good.len() / 3].to_vec();
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "truncated JPEG",
            truncated,
            vec!["images[0]", "truncated JPEG", "end-of-image"],
        ),
        (
            "JPEG claiming 30000x30000",
            jpeg_claiming(30000),
            vec![
                "images[0]",
                "30000x30000",
                "exceeds the limit of 40000000 pixels",
            ],
        ),
        (
            "PNG claiming 30000x30000",
            png_claiming(30000, 30000),
            vec!["images[0]", "30000x30000", "exceeds the limit"],
        ),
        (
            "GIF",
            gif,
            vec!["images[0]", "unsupported image format", "JPEG, PNG or WebP"],
        ),
    ];
    for (what, bytes, words) in cases {
        eprintln!("case: {what}");
        expect_status(
            client
                .embed(pb::EmbedRequest {
                    images: vec![encoded(bytes)],
                })
                .await,
            Code::InvalidArgument,
            &words,
        );
    }
    // Still serving: health, and a real photo.
    common::expect_serving(&server).await;
    let ok = client
        .embed(pb::EmbedRequest {
            images: vec![encoded(good)],
        })
        .await
        .expect("a good photo after the bad ones")
        .into_inner();
    assert!(!ok.images[0].faces.is_empty());
}
