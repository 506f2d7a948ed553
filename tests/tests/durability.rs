//! Durable galleries: crashes, restarts, named galleries and their errors.

mod common;

use common::expect_status;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{lfw_crop_at, lfw_photos, raw_image, tempfile_dir::TempDir, Server};
use tonic::Code;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

/// A small deterministic generator (no extra crate): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SIGKILL at random moments under concurrent enrollment, several times (with junk
/// appended to the write-ahead log once): after each restart every acknowledged
/// enrollment is present exactly once and identifiable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_enrollments_survive_sigkill() {
    survive_sigkill("flat").await;
}

/// The same on an HNSW default gallery: its vectors cannot be removed in place, so
/// crash recovery rebuilds the graph from the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_enrollments_survive_sigkill_with_hnsw() {
    survive_sigkill("hnsw").await;
}

/// The same on a compressed IVF gallery (16 cells, so it trains during the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_enrollments_survive_sigkill_with_ivfpq() {
    survive_sigkill("ivfpq").await;
}

/// Server settings for a default gallery of `index` in these tests: HNSW's efSearch
/// far above the default, and IVF galleries of 16 cells, all scanned, re-ranking 4,096
/// candidates. The unenrolled probes' best matches are near-ties among random
/// templates, which a rebuilt index must find as the first one did; at these sizes
/// the search is then exact in practice.
fn durable_env(index: &str) -> [(&'static str, String); 5] {
    [
        ("VARGID_GALLERY__INDEX", index.to_string()),
        ("VARGID_GALLERY__HNSW__EF_SEARCH", "1024".into()),
        ("VARGID_GALLERY__IVF__NLIST", "16".into()),
        ("VARGID_GALLERY__IVF__NPROBE", "16".into()),
        ("VARGID_GALLERY__IVF__RERANK", "4096".into()),
    ]
}

async fn survive_sigkill(index: &str) {
    let env = durable_env(index);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data = TempDir::new("crash");
    let photos = lfw_photos();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 | 1);
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    // (identity id, index of its photo), acknowledged by the server.
    let acked: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let next_photo = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    for round in 0..3 {
        let mut server = Server::start_in(&data.0, &env);
        if round == 0 && index != "flat" {
            // An IVF gallery trains at 16 cells x 39 templates: past that before the
            // crashes, so they hit the trained index (and HNSW a larger graph).
            prefill(&mut server.client().await, 700, &mut rng).await;
        }
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..6 {
            let mut client = server.client().await;
            let acked = acked.clone();
            let next_photo = next_photo.clone();
            let photos = photos.clone();
            workers.spawn(async move {
                for n in 0.. {
                    let photo =
                        next_photo.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % photos.len();
                    let id = format!("r{round}-w{worker}-{n}");
                    let reply = client
                        .enroll(pb::EnrollRequest {
                            identity_id: id.clone(),
                            images: vec![raw_image(&lfw_crop_at(&photos[photo]))],
                            ..Default::default()
                        })
                        .await;
                    match reply {
                        Ok(_) => acked.lock().unwrap().push((id, photo)),
                        Err(_) => return, // the server is gone
                    }
                }
            });
        }
        let after = Duration::from_millis(800 + rng.next() % 2200);
        tokio::time::sleep(after).await;
        server.kill();
        while workers.join_next().await.is_some() {}
        eprintln!(
            "round {round}: killed after {after:?}, {} acknowledged so far",
            acked.lock().unwrap().len()
        );

        if round == 1 {
            // A torn tail: junk after the last complete frame of the log.
            let wal = data.0.join("galleries.sqlite3-wal");
            let mut junk = vec![0u8; 3000];
            junk.iter_mut().for_each(|b| *b = rng.next() as u8);
            let mut bytes = std::fs::read(&wal).unwrap_or_default();
            bytes.extend_from_slice(&junk);
            std::fs::write(&wal, bytes).expect("appending to the WAL");
        }
    }

    let server = Server::start_in(&data.0, &env);
    let mut client = server.client().await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "the load enrolled too little to test: {}",
        acked.len()
    );
    let present = common::all_identities(&mut client, "").await;
    let ids: HashSet<&str> = present.iter().map(|i| i.identity_id.as_str()).collect();
    for identity in &present {
        assert_eq!(
            identity.face_ids.len(),
            1,
            "{} is duplicated",
            identity.identity_id
        );
    }
    for (id, photo) in &acked {
        assert!(ids.contains(id.as_str()), "acknowledged {id} was lost");
        let found = client
            .identify(pb::IdentifyRequest {
                image: Some(raw_image(&lfw_crop_at(&photos[*photo]))),
                top_k: 1,
                ..Default::default()
            })
            .await
            .expect("identify")
            .into_inner();
        let best = &found.faces[0].candidates[0];
        assert!(best.score > 0.9999, "{id}: best score {}", best.score);
        // Another enrollment of the very same photo may tie; the ids must then share it.
        if best.identity_id != *id {
            let same_photo: Vec<&String> = acked
                .iter()
                .filter(|(_, p)| p == photo)
                .map(|(i, _)| i)
                .collect();
            assert!(
                same_photo.contains(&&best.identity_id),
                "{id} identified as {}",
                best.identity_id
            );
        }
    }
    eprintln!(
        "{} acknowledged, {} present after 3 crashes",
        acked.len(),
        present.len()
    );
}

/// Imports `n` identities of one random template each into the default gallery.
async fn prefill(
    client: &mut FaceServiceClient<tonic::transport::Channel>,
    n: usize,
    rng: &mut Rng,
) {
    let model = common::served_model(client).await;
    let dim = model.embedding_size as usize;
    let identities = (0..n)
        .map(|i| pb::ExportedIdentity {
            identity: Some(pb::Identity {
                identity_id: format!("prefill-{i:04}"),
                ..Default::default()
            }),
            templates: vec![pb::Template {
                face_id: 0,
                embedding: random_unit(rng, dim),
            }],
        })
        .collect();
    client
        .import_gallery(pb::ImportGalleryRequest {
            gallery: String::new(),
            model: Some(model),
            identities,
        })
        .await
        .expect("prefill import");
}

fn random_unit(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| (rng.unit() - 0.5) as f32).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

async fn answers(
    client: &mut FaceServiceClient<tonic::transport::Channel>,
    probes: &[pb::Image],
) -> Vec<Vec<(String, f32)>> {
    let mut out = Vec::new();
    for probe in probes {
        let reply = client
            .identify(pb::IdentifyRequest {
                image: Some(probe.clone()),
                top_k: 5,
                ..Default::default()
            })
            .await
            .expect("identify")
            .into_inner();
        out.push(
            reply.faces[0]
                .candidates
                .iter()
                .map(|c| (c.identity_id.clone(), c.score))
                .collect(),
        );
    }
    out
}

/// A gallery of 10,000 templates comes back after a clean restart (from the index
/// snapshot) and after losing the snapshot (rebuilt), with identical answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_templates_survive_restarts_with_identical_answers() {
    survive_restarts("flat").await;
}

/// The same on HNSW. A rebuilt graph is another approximation (FAISS inserts a batch
/// by level, not in enrollment order), so after a rebuild the best match must be the
/// same; from the snapshot, every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_templates_survive_restarts_with_hnsw() {
    survive_restarts("hnsw").await;
}

/// The same on a compressed IVF gallery, trained at 624 templates: the rebuild trains
/// it again, so, as for HNSW, the best matches must be the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_templates_survive_restarts_with_ivfpq() {
    survive_restarts("ivfpq").await;
}

async fn survive_restarts(index: &str) {
    let env = durable_env(index);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data = TempDir::new("restart");
    let mut server = Server::start_in(&data.0, &env);
    let mut client = server.client().await;
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let model = pb::ModelTag {
        name: info.model_name.clone(),
        version: info.model_version.clone(),
        embedding_size: info.embedding_size,
    };
    let dim = info.embedding_size as usize;

    // Real faces, so that probes land near some templates, plus 9,990 random ones.
    let photos = lfw_photos();
    let probes: Vec<pb::Image> = photos
        .iter()
        .step_by(701)
        .take(10)
        .map(|p| raw_image(&lfw_crop_at(p)))
        .collect();
    for (i, probe) in probes.iter().take(5).enumerate() {
        client
            .enroll(pb::EnrollRequest {
                identity_id: format!("real-{i}"),
                images: vec![probe.clone(), raw_image(&lfw_crop_at(&photos[i * 13 + 1]))],
                ..Default::default()
            })
            .await
            .expect("enroll");
    }
    let mut rng = Rng(42);
    for chunk in 0..2 {
        let identities = (0..999)
            .map(|i| pb::ExportedIdentity {
                identity: Some(pb::Identity {
                    identity_id: format!("synthetic-{chunk}-{i:04}"),
                    metadata: [("chunk".to_string(), chunk.to_string())].into(),
                    ..Default::default()
                }),
                templates: (0..5)
                    .map(|_| pb::Template {
                        face_id: 0,
                        embedding: random_unit(&mut rng, dim),
                    })
                    .collect(),
            })
            .collect();
        let imported = client
            .import_gallery(pb::ImportGalleryRequest {
                gallery: String::new(),
                model: Some(model.clone()),
                identities,
            })
            .await
            .expect("import")
            .into_inner();
        assert_eq!((imported.identities, imported.faces), (999, 4995));
    }
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.gallery_size, 10_000);
    let before = answers(&mut client, &probes).await;
    assert!(before.iter().all(|a| a.len() == 5));

    // Clean restart: the snapshot is written and used.
    drop(client);
    assert!(server.terminate().success());
    let mut server = Server::start_in(&data.0, &env);
    assert!(server
        .wait_for_log("index loaded from snapshot", Duration::from_secs(5))
        .is_some());
    let mut client = server.client().await;
    assert_eq!(
        answers(&mut client, &probes).await,
        before,
        "answers after a clean restart"
    );

    // A damaged snapshot is detected and the index rebuilt from the record.
    drop(client);
    assert!(server.terminate().success());
    std::fs::write(data.0.join("index/default.faiss"), b"not a faiss index").unwrap();
    let mut server = Server::start_in(&data.0, &env);
    assert!(server
        .wait_for_log("rebuilt from the record", Duration::from_secs(30))
        .is_some());
    let mut client = server.client().await;
    let rebuilt = answers(&mut client, &probes).await;
    if index == "flat" {
        assert_eq!(rebuilt, before, "answers after a rebuild");
    } else {
        let best = |a: &[Vec<(String, f32)>]| a.iter().map(|c| c[0].0.clone()).collect::<Vec<_>>();
        assert_eq!(
            best(&rebuilt),
            best(&before),
            "best matches after a rebuild"
        );
    }
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.gallery_size, 10_000);

    // Deletions, then a clean restart: the snapshot is used again (HNSW keeps the
    // removed vectors in its graph, unreachable), and no deleted identity comes back.
    let deleted = ["real-0", "real-1"];
    for id in deleted {
        client
            .delete_identity(pb::DeleteIdentityRequest {
                identity_id: id.into(),
                ..Default::default()
            })
            .await
            .expect("delete");
    }
    let after_delete = answers(&mut client, &probes).await;
    drop(client);
    assert!(server.terminate().success());
    let mut server = Server::start_in(&data.0, &env);
    assert!(
        server
            .wait_for_log("index loaded from snapshot", Duration::from_secs(5))
            .is_some(),
        "a few deletions must not cost a rebuild"
    );
    let mut client = server.client().await;
    let restarted = answers(&mut client, &probes).await;
    assert_eq!(
        restarted, after_delete,
        "answers after deletes and a restart"
    );
    assert!(restarted
        .iter()
        .flatten()
        .all(|(id, _)| !deleted.contains(&id.as_str())));
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.gallery_size, 10_000 - 4);
}

fn set_gallery_model_version(data_dir: &Path, gallery: &str, version: &str) {
    let db = rusqlite::Connection::open(data_dir.join("galleries.sqlite3")).expect("open db");
    db.execute(
        "UPDATE galleries SET model_version = ?1 WHERE name = ?2",
        rusqlite::params![version, gallery],
    )
    .expect("update");
}

/// Named galleries: isolation, export/import, and the errors of each misuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_galleries_and_their_errors() {
    let data = TempDir::new("galleries");
    let mut server = Server::start_in(&data.0, &[]);
    let mut client = server.client().await;
    let face = raw_image(&lfw_crop_at(&lfw_photos()[3]));

    let created = client
        .create_gallery(pb::CreateGalleryRequest {
            name: "staff".into(),
            index: "IDMap2,HNSW32".into(),
            match_threshold: Some(0.5),
            index_parameters: None,
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        (created.index.as_str(), created.match_threshold),
        ("IDMap2,HNSW32", 0.5)
    );
    expect_status(
        client
            .create_gallery(pb::CreateGalleryRequest {
                name: "staff".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        &["staff"],
    );
    expect_status(
        client
            .create_gallery(pb::CreateGalleryRequest {
                name: "bad name!".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["bad name!"],
    );
    expect_status(
        client
            .create_gallery(pb::CreateGalleryRequest {
                name: "x".into(),
                index: "HNSW32".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["IDMap"],
    );

    // Enrolled in "staff", invisible in "default".
    client
        .enroll(pb::EnrollRequest {
            identity_id: "ann".into(),
            images: vec![face.clone()],
            gallery: "staff".into(),
            metadata: BTreeMap::from([("team".to_string(), "a".to_string())])
                .into_iter()
                .collect(),
            ..Default::default()
        })
        .await
        .expect("enroll in staff");
    let in_default = client
        .identify(pb::IdentifyRequest {
            image: Some(face.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(in_default.faces[0].candidates.is_empty());
    let in_staff = client
        .identify(pb::IdentifyRequest {
            image: Some(face.clone()),
            gallery: "staff".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_staff.faces[0].candidates[0].identity_id, "ann");
    assert_eq!(in_staff.threshold, 0.5, "the gallery's own threshold");

    // Unknown gallery: NOT_FOUND on every data RPC and on drop.
    expect_status(
        client
            .enroll(pb::EnrollRequest {
                identity_id: "x".into(),
                images: vec![face.clone()],
                gallery: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["gallery \"nope\""],
    );
    expect_status(
        client
            .identify(pb::IdentifyRequest {
                image: Some(face.clone()),
                gallery: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["nope"],
    );
    expect_status(
        client
            .drop_gallery(pb::DropGalleryRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        &["nope"],
    );

    // Export "staff", import into a new gallery: same identities and templates.
    let exported = client
        .export_gallery(pb::ExportGalleryRequest {
            gallery: "staff".into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    assert_eq!(exported.identities.len(), 1);
    assert!(exported.next_page_token.is_empty());
    client
        .create_gallery(pb::CreateGalleryRequest {
            name: "copy".into(),
            ..Default::default()
        })
        .await
        .expect("create copy");
    let mut foreign = exported.model.clone().unwrap();
    foreign.version = "some-other-version".into();
    expect_status(
        client
            .import_gallery(pb::ImportGalleryRequest {
                gallery: "copy".into(),
                model: Some(foreign),
                identities: exported.identities.clone(),
            })
            .await,
        Code::FailedPrecondition,
        &["some-other-version"],
    );
    client
        .import_gallery(pb::ImportGalleryRequest {
            gallery: "copy".into(),
            model: exported.model.clone(),
            identities: exported.identities.clone(),
        })
        .await
        .expect("import");
    let copy = client
        .get_identity(pb::GetIdentityRequest {
            identity_id: "ann".into(),
            gallery: "copy".into(),
        })
        .await
        .expect("imported identity")
        .into_inner();
    assert_eq!(copy.metadata.get("team").map(String::as_str), Some("a"));

    // A gallery whose templates came from another model refuses this model's faces.
    drop(client);
    assert!(server.terminate().success());
    set_gallery_model_version(&data.0, "copy", "0.0.1-older");
    let server = Server::start_in(&data.0, &[]);
    let mut client = server.client().await;
    expect_status(
        client
            .identify(pb::IdentifyRequest {
                image: Some(face.clone()),
                gallery: "copy".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["0.0.1-older", "not comparable"],
    );
    let listed = client
        .list_galleries(pb::ListGalleriesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.galleries.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["copy", "default", "staff"]);
    let staff = &listed.galleries[2];
    assert_eq!(
        (staff.identity_count, staff.face_count),
        (1, 1),
        "staff survived the restart"
    );

    client
        .drop_gallery(pb::DropGalleryRequest {
            name: "staff".into(),
        })
        .await
        .expect("drop");
    expect_status(
        client
            .get_identity(pb::GetIdentityRequest {
                identity_id: "ann".into(),
                gallery: "staff".into(),
            })
            .await,
        Code::NotFound,
        &["staff"],
    );
}
