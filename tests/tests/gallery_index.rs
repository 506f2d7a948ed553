//! Per-gallery index settings (accepted, shown, kept across restarts, refused by field)
//! and search by template (Identify and Verify without inference for the probe).

mod common;

use common::{expect_status, lfw_crop_at, lfw_photos, raw_image, tempfile_dir::TempDir, Server};
use tonic::Code;
use vargid_proto::v1 as pb;

fn hnsw(m: Option<u32>, ef_c: Option<u32>, ef_s: Option<u32>) -> Option<pb::IndexParameters> {
    Some(pb::IndexParameters {
        hnsw_m: m,
        hnsw_ef_construction: ef_c,
        hnsw_ef_search: ef_s,
        ..Default::default()
    })
}

fn ivf(nlist: Option<u32>, nprobe: Option<u32>) -> Option<pb::IndexParameters> {
    Some(pb::IndexParameters {
        ivf_nlist: nlist,
        ivf_nprobe: nprobe,
        ..Default::default()
    })
}

fn ivfpq(nlist: u32, nprobe: u32, rerank: u32) -> Option<pb::IndexParameters> {
    Some(pb::IndexParameters {
        ivf_nlist: Some(nlist),
        ivf_nprobe: Some(nprobe),
        ivf_rerank: Some(rerank),
        ..Default::default()
    })
}

fn create(
    name: &str,
    index: &str,
    parameters: Option<pb::IndexParameters>,
) -> pb::CreateGalleryRequest {
    pb::CreateGalleryRequest {
        name: name.into(),
        index: index.into(),
        match_threshold: None,
        index_parameters: parameters,
    }
}

fn shown(galleries: &[pb::GalleryInfo], name: &str) -> (String, Option<pb::IndexParameters>) {
    let g = galleries
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("gallery {name} listed"));
    (g.index.clone(), g.index_parameters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_settings_are_accepted_shown_kept_and_refused_by_field() {
    let data = TempDir::new("index-settings");
    // The server's defaults for fields a request leaves unset.
    let env = [
        ("VARGID_GALLERY__HNSW__EF_CONSTRUCTION", "48"),
        ("VARGID_GALLERY__HNSW__EF_SEARCH", "77"),
        ("VARGID_GALLERY__IVF__NPROBE", "12"),
        ("VARGID_GALLERY__IVF__RERANK", "500"),
    ];
    let mut server = Server::start_in(&data.0, &env);
    let mut client = server.client().await;

    let tuned = client
        .create_gallery(create(
            "tuned",
            "hnsw",
            hnsw(Some(16), Some(100), Some(150)),
        ))
        .await
        .expect("create tuned")
        .into_inner();
    assert_eq!(tuned.index, "IDMap2,HNSW16");
    assert_eq!(tuned.index_parameters, hnsw(Some(16), Some(100), Some(150)));
    let defaults = client
        .create_gallery(create("defaults", "IDMap2,HNSW24", None))
        .await
        .expect("create with defaults")
        .into_inner();
    assert_eq!(
        defaults.index_parameters,
        hnsw(Some(24), Some(48), Some(77))
    );
    let clustered = client
        .create_gallery(create("clustered", "ivf", ivf(Some(64), None)))
        .await
        .expect("create ivf")
        .into_inner();
    assert_eq!(clustered.index, "IDMap2,IVF64,Flat");
    assert_eq!(clustered.index_parameters, ivf(Some(64), Some(12)));
    let compressed = client
        .create_gallery(create("compressed", "ivfpq", ivf(Some(64), None)))
        .await
        .expect("create ivfpq")
        .into_inner();
    assert_eq!(compressed.index, "IDMap2,IVF64,PQ64x4fs,RFlat");
    assert_eq!(compressed.index_parameters, ivfpq(64, 12, 500));
    let flat = client
        .create_gallery(create("exact", "flat", None))
        .await
        .expect("create flat")
        .into_inner();
    assert_eq!(
        (flat.index.as_str(), flat.index_parameters),
        ("IDMap2,Flat", None)
    );

    let refusals = [
        (
            create("a", "hnsw", hnsw(None, None, Some(0))),
            "index_parameters.hnsw_ef_search",
        ),
        (
            create("b", "hnsw", hnsw(Some(1000), None, None)),
            "index_parameters.hnsw_m",
        ),
        (
            create("c", "hnsw", hnsw(None, Some(1), None)),
            "index_parameters.hnsw_ef_construction",
        ),
        (
            create("d", "flat", hnsw(None, None, Some(64))),
            "index_parameters.hnsw_ef_search",
        ),
        (
            create("e", "IDMap2,HNSW32", hnsw(Some(16), None, None)),
            "index_parameters.hnsw_m",
        ),
        (create("f", "HNSW32", None), "index"),
        (create("g", "IDMap2,IVF64,PQ8", None), "IVF<nlist>,Flat"),
        (
            create("h", "ivf", ivf(Some(8), None)),
            "index_parameters.ivf_nlist",
        ),
        (
            create("i", "ivf", ivf(Some(64), Some(65))),
            "index_parameters.ivf_nprobe",
        ),
        (
            create("j", "hnsw", ivf(None, Some(4))),
            "index_parameters.ivf_nprobe",
        ),
        (create("k", "IDMap2,PQ8", None), "training"),
        (
            create("l", "ivf", ivfpq(64, 8, 100)),
            "index_parameters.ivf_rerank",
        ),
        (
            create("m", "ivfpq", ivfpq(64, 8, 0)),
            "index_parameters.ivf_rerank",
        ),
    ];
    for (request, field) in refusals {
        let name = request.name.clone();
        expect_status(
            client.create_gallery(request).await,
            Code::InvalidArgument,
            &[field],
        );
        let listed = client
            .list_galleries(pb::ListGalleriesRequest {})
            .await
            .unwrap()
            .into_inner()
            .galleries;
        assert!(listed.iter().all(|g| g.name != name), "{name} was recorded");
    }

    // Kept across a restart, with different server defaults in force.
    server.terminate();
    let mut server = Server::start_in(&data.0, &[]);
    let mut client = server.client().await;
    let listed = client
        .list_galleries(pb::ListGalleriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .galleries;
    assert_eq!(
        shown(&listed, "tuned"),
        (
            "IDMap2,HNSW16".to_string(),
            hnsw(Some(16), Some(100), Some(150))
        )
    );
    assert_eq!(
        shown(&listed, "defaults"),
        (
            "IDMap2,HNSW24".to_string(),
            hnsw(Some(24), Some(48), Some(77))
        )
    );
    assert_eq!(shown(&listed, "exact"), ("IDMap2,Flat".to_string(), None));
    assert_eq!(
        shown(&listed, "clustered"),
        ("IDMap2,IVF64,Flat".to_string(), ivf(Some(64), Some(12)))
    );
    assert_eq!(
        shown(&listed, "compressed"),
        (
            "IDMap2,IVF64,PQ64x4fs,RFlat".to_string(),
            ivfpq(64, 12, 500)
        )
    );
    server.terminate();
}

/// A pseudo-random unit vector per `i` (xorshift64*); `jitter` > 0 moves it a little
/// (another "photo" of the same template).
fn template(i: usize, dim: usize, jitter: f32) -> Vec<f32> {
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
    for (d, x) in v.iter_mut().enumerate() {
        *x += jitter * if d % 2 == 0 { 1.0 } else { -1.0 };
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_template_matches_search_by_photo_and_checks_the_model() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    let model = common::served_model(&mut client).await;
    let dim = model.embedding_size as usize;
    client
        .create_gallery(create("g", "hnsw", hnsw(Some(16), None, Some(64))))
        .await
        .expect("create");

    // 300 identities by ImportGallery (no inference), one real face by Enroll.
    let identities = (0..300)
        .map(|i| pb::ExportedIdentity {
            identity: Some(pb::Identity {
                identity_id: format!("p{i:03}"),
                ..Default::default()
            }),
            templates: vec![pb::Template {
                face_id: 0,
                embedding: template(i, dim, 0.0),
            }],
        })
        .collect();
    client
        .import_gallery(pb::ImportGalleryRequest {
            gallery: "g".into(),
            model: Some(model.clone()),
            identities,
        })
        .await
        .expect("import");
    let face = raw_image(&lfw_crop_at(&lfw_photos()[5]));
    client
        .enroll(pb::EnrollRequest {
            identity_id: "real".into(),
            images: vec![face.clone()],
            gallery: "g".into(),
            ..Default::default()
        })
        .await
        .expect("enroll");

    let by_template = |embedding: Vec<f32>, model: Option<pb::ModelTag>| pb::IdentifyRequest {
        gallery: "g".into(),
        top_k: 3,
        probe_template: Some(pb::ProbeTemplate { model, embedding }),
        ..Default::default()
    };
    // A probe near p123 (not normalised: the server normalises).
    let near: Vec<f32> = template(123, dim, 0.01).iter().map(|x| x * 3.0).collect();
    let answer = client
        .identify(by_template(near.clone(), Some(model.clone())))
        .await
        .expect("identify by template")
        .into_inner();
    assert_eq!(answer.faces.len(), 1);
    assert!(answer.faces[0].face.is_none());
    assert_eq!(answer.faces[0].candidates[0].identity_id, "p123");
    assert!(answer.faces[0].candidates[0].score > 0.95);

    // The real face: Embed, then search by its template, equals search by photo.
    let embedded = client
        .embed(pb::EmbedRequest {
            images: vec![face.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let embedding = embedded.images[0].faces[0].embedding.clone();
    let by_photo = client
        .identify(pb::IdentifyRequest {
            image: Some(face.clone()),
            gallery: "g".into(),
            top_k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let by_embedding = client
        .identify(by_template(embedding.clone(), Some(model.clone())))
        .await
        .unwrap()
        .into_inner();
    let top = |r: &pb::IdentifyResponse| {
        let c = &r.faces[0].candidates[0];
        (c.identity_id.clone(), c.face_id, c.score)
    };
    let (photo_id, photo_face, photo_score) = top(&by_photo);
    let (tmpl_id, tmpl_face, tmpl_score) = top(&by_embedding);
    assert_eq!((photo_id.as_str(), photo_face), ("real", tmpl_face));
    assert_eq!(tmpl_id, "real");
    assert!(
        (photo_score - tmpl_score).abs() < 1e-5,
        "{photo_score} vs {tmpl_score}"
    );

    // Verify by template, against the identity (its stored vector, read back from
    // the HNSW index) and against a photo.
    let verified = client
        .verify(pb::VerifyRequest {
            gallery: "g".into(),
            probe_template: Some(pb::ProbeTemplate {
                model: Some(model.clone()),
                embedding: embedding.clone(),
            }),
            reference: Some(pb::verify_request::Reference::IdentityId("real".into())),
            ..Default::default()
        })
        .await
        .expect("verify by template")
        .into_inner();
    assert!(verified.is_match && (verified.score - photo_score).abs() < 1e-5);
    let against_photo = client
        .verify(pb::VerifyRequest {
            gallery: "g".into(),
            probe_template: Some(pb::ProbeTemplate {
                model: Some(model.clone()),
                embedding: embedding.clone(),
            }),
            reference: Some(pb::verify_request::Reference::Image(face.clone())),
            ..Default::default()
        })
        .await
        .expect("verify template against photo")
        .into_inner();
    assert!(against_photo.score > 0.999, "{}", against_photo.score);

    // Deleted from the HNSW gallery: never returned again.
    client
        .delete_identity(pb::DeleteIdentityRequest {
            identity_id: "p123".into(),
            gallery: "g".into(),
        })
        .await
        .expect("delete");
    let after = client
        .identify(by_template(near, Some(model.clone())))
        .await
        .unwrap()
        .into_inner();
    assert!(after.faces[0]
        .candidates
        .iter()
        .all(|c| c.identity_id != "p123"));
    assert_eq!(after.faces[0].candidates.len(), 3);

    // Faults, each named.
    let other_version = pb::ModelTag {
        version: "0.0.0-other".into(),
        ..model.clone()
    };
    expect_status(
        client
            .identify(by_template(embedding.clone(), Some(other_version)))
            .await,
        Code::FailedPrecondition,
        &["probe_template.model", "0.0.0-other"],
    );
    expect_status(
        client.identify(by_template(embedding.clone(), None)).await,
        Code::InvalidArgument,
        &["probe_template.model: required"],
    );
    expect_status(
        client
            .identify(by_template(vec![0.5; dim + 1], Some(model.clone())))
            .await,
        Code::InvalidArgument,
        &["probe_template.embedding", &format!("{}", dim + 1)],
    );
    expect_status(
        client
            .identify(by_template(vec![0.0; dim], Some(model.clone())))
            .await,
        Code::InvalidArgument,
        &["all zero"],
    );
    let mut nan = embedding.clone();
    nan[7] = f32::NAN;
    expect_status(
        client.identify(by_template(nan, Some(model.clone()))).await,
        Code::InvalidArgument,
        &["probe_template.embedding[7]"],
    );
    let mut both = by_template(embedding.clone(), Some(model.clone()));
    both.image = Some(face.clone());
    expect_status(
        client.identify(both).await,
        Code::InvalidArgument,
        &["not both"],
    );
    expect_status(
        client
            .verify(pb::VerifyRequest {
                gallery: "g".into(),
                probe: Some(face),
                probe_template: Some(pb::ProbeTemplate {
                    model: Some(model),
                    embedding,
                }),
                reference: Some(pb::verify_request::Reference::IdentityId("real".into())),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["not both"],
    );
}

/// An IVF gallery through the API: exact while it has too few templates to train on,
/// trained once it has 39 per cell, answers by template with the right ids, never
/// returns a deleted identity, and comes back from its snapshot after a restart with
/// its ids, its vectors (Verify) and its deletions intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivf_gallery_trains_keeps_ids_right_across_deletes_and_restarts() {
    trains_keeps_ids_right_across_deletes_and_restarts("ivf").await;
}

/// The same for the compressed layout, whose vectors come back from its re-rank
/// storage (the default re-rank count covers this gallery, so answers are exact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivfpq_gallery_trains_keeps_ids_right_across_deletes_and_restarts() {
    trains_keeps_ids_right_across_deletes_and_restarts("ivfpq").await;
}

async fn trains_keeps_ids_right_across_deletes_and_restarts(layout: &str) {
    let data = TempDir::new(&format!("{layout}-gallery"));
    let mut server = Server::start_in(&data.0, &[]);
    let mut client = server.client().await;
    let model = common::served_model(&mut client).await;
    let dim = model.embedding_size as usize;
    client
        .create_gallery(create("v", layout, ivf(Some(16), Some(4))))
        .await
        .expect("create");
    let import = |range: std::ops::Range<usize>| pb::ImportGalleryRequest {
        gallery: "v".into(),
        model: Some(model.clone()),
        identities: range
            .map(|i| pb::ExportedIdentity {
                identity: Some(pb::Identity {
                    identity_id: format!("p{i:04}"),
                    ..Default::default()
                }),
                templates: vec![pb::Template {
                    face_id: 0,
                    embedding: template(i, dim, 0.0),
                }],
            })
            .collect(),
    };
    let best = |i: usize| pb::IdentifyRequest {
        gallery: "v".into(),
        top_k: 1,
        probe_template: Some(pb::ProbeTemplate {
            model: Some(model.clone()),
            embedding: template(i, dim, 0.0),
        }),
        ..Default::default()
    };
    // 100 templates: staging, exact.
    client.import_gallery(import(0..100)).await.expect("import");
    let hit = client.identify(best(42)).await.unwrap().into_inner();
    assert_eq!(hit.faces[0].candidates[0].identity_id, "p0042");
    // 16 cells x 39 = 624: the next import trains the index.
    client
        .import_gallery(import(100..800))
        .await
        .expect("import");
    for i in [0, 42, 100, 799] {
        let hit = client.identify(best(i)).await.unwrap().into_inner();
        let c = &hit.faces[0].candidates[0];
        assert_eq!(c.identity_id, format!("p{i:04}"));
        assert!(c.score > 0.999, "{}", c.score);
    }
    for gone in ["p0042", "p0500"] {
        client
            .delete_identity(pb::DeleteIdentityRequest {
                identity_id: gone.into(),
                gallery: "v".into(),
            })
            .await
            .expect("delete");
    }
    type Client =
        vargid_proto::v1::face_service_client::FaceServiceClient<tonic::transport::Channel>;
    let check = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            for i in [42, 500] {
                let hit = client.identify(best(i)).await.unwrap().into_inner();
                let c = &hit.faces[0].candidates[0];
                assert_ne!(
                    c.identity_id,
                    format!("p{i:04}"),
                    "a deleted identity returned"
                );
            }
            let hit = client.identify(best(777)).await.unwrap().into_inner();
            assert_eq!(hit.faces[0].candidates[0].identity_id, "p0777");
        }
    };
    check(&mut client).await;

    // A clean restart loads the trained index from its snapshot.
    server.terminate();
    let server = Server::start_in(&data.0, &[]);
    let mut client = server.client().await;
    check(&mut client).await;
    let listed = client
        .list_galleries(pb::ListGalleriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .galleries;
    let v = listed.iter().find(|g| g.name == "v").expect("listed");
    assert_eq!((v.face_count, v.identity_count), (798, 798));
    let verified = client
        .verify(pb::VerifyRequest {
            gallery: "v".into(),
            reference: Some(pb::verify_request::Reference::IdentityId("p0321".into())),
            probe_template: Some(pb::ProbeTemplate {
                model: Some(model.clone()),
                embedding: template(321, dim, 0.0),
            }),
            ..Default::default()
        })
        .await
        .expect("verify from the index's own vectors")
        .into_inner();
    assert!(verified.is_match && verified.score > 0.999);
}
