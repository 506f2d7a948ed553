//! Erasure: after DeleteIdentity and CompactStorage the deleted templates' bytes are
//! in no file under the data directory, and the identity is in no answer.

mod common;

use std::path::Path;

use common::{lfw_crop, raw_image, Server};
use tonic::Code;
use vargid_proto::v1 as pb;

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
    out
}

/// The files under `dir` holding any of `needles`.
fn holders(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| {
            needles
                .iter()
                .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
        })
        .map(|(p, _)| p.display().to_string())
        .collect()
}

/// The first 32 floats of each stored template, as the bytes a file would hold
/// (little-endian f32, as the database and FAISS store them).
fn template_bytes(templates: &[pb::Template]) -> Vec<Vec<u8>> {
    templates
        .iter()
        .map(|t| {
            t.embedding[..32]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn deleted_templates_leave_no_bytes_behind() {
    leave_no_bytes_behind("flat").await;
}

/// HNSW keeps a deleted vector in its graph until a rebuild: CompactStorage must still
/// leave no copy on disk, and no later snapshot may write one.
#[tokio::test]
async fn deleted_templates_leave_no_bytes_behind_with_hnsw() {
    leave_no_bytes_behind("hnsw").await;
}

async fn leave_no_bytes_behind(index: &str) {
    let env = [("VARGID_GALLERY__INDEX", index)];
    let data = std::env::temp_dir().join(format!("vargid-erasure-{index}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let people = [
        ("victim", "Ann_Veneman", [3, 5]),
        ("keeper", "George_W_Bush", [7, 16]),
    ];

    let mut server = Server::start_in(&data, &env);
    let mut client = server.client().await;
    for (id, name, photos) in people {
        client
            .enroll(pb::EnrollRequest {
                identity_id: id.into(),
                images: photos
                    .iter()
                    .map(|n| raw_image(&lfw_crop(name, *n)))
                    .collect(),
                ..Default::default()
            })
            .await
            .expect("enroll");
    }
    let exported = client
        .export_gallery(pb::ExportGalleryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let templates = |id: &str| {
        let identity = exported
            .identities
            .iter()
            .find(|i| i.identity.as_ref().unwrap().identity_id == id);
        template_bytes(&identity.unwrap().templates)
    };
    let (victim, keeper) = (templates("victim"), templates("keeper"));
    // A clean stop writes an index snapshot holding both; the restart loads it.
    assert!(server.terminate().success());
    let server = Server::start_in(&data, &env);
    let mut client = server.client().await;
    assert!(
        !holders(&data, &victim).is_empty(),
        "the test must see stored templates"
    );

    client
        .delete_identity(pb::DeleteIdentityRequest {
            identity_id: "victim".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    client
        .compact_storage(pb::CompactStorageRequest {})
        .await
        .expect("compact");
    assert_eq!(
        holders(&data, &victim),
        Vec::<String>::new(),
        "deleted template bytes remain"
    );
    assert!(
        !holders(&data, &keeper).is_empty(),
        "kept templates must still be stored"
    );

    // Gone from every answer.
    let status = client
        .get_identity(pb::GetIdentityRequest {
            identity_id: "victim".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let listed = client
        .list_identities(pb::ListIdentitiesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.identities.iter().all(|i| i.identity_id != "victim"));
    let found = client
        .identify(pb::IdentifyRequest {
            image: Some(raw_image(&lfw_crop("Ann_Veneman", 3))),
            top_k: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.faces[0]
        .candidates
        .iter()
        .all(|c| c.identity_id != "victim"));
    let exported = client
        .export_gallery(pb::ExportGalleryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(exported
        .identities
        .iter()
        .all(|i| i.identity.as_ref().unwrap().identity_id != "victim"));

    // And after the next clean stop, which writes the snapshot again.
    let mut server = server;
    assert!(server.terminate().success());
    assert_eq!(holders(&data, &victim), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&data);
}
