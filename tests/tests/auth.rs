//! API keys over every RPC: no key, another tenant's gallery, a read-only key, an
//! admin key; nothing about another tenant can be enumerated; keys rotate without a
//! restart. See `crates/server/src/auth.rs` for the status codes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{lfw_crop, raw_image, Server};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

const ADMIN: &str = "admin-key-0123456789abcdef";
const WRITER_A: &str = "writer-a-key-0123456789abcdef";
const READER_A: &str = "reader-a-key-0123456789abcdef";

fn digest(key: &str) -> String {
    let out = std::process::Command::new(common::binary())
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(key.as_bytes())?;
            child.wait_with_output()
        })
        .expect("vargid hash-key");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write_keys(path: &Path, reader_key: &str) {
    let entry = |id: &str, key: &str, role: &str, galleries: &str| {
        format!(
            "[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nrole = \"{role}\"\ngalleries = {galleries}\n\n",
            digest(key)
        )
    };
    let body = entry("admin", ADMIN, "admin", "[\"*\"]")
        + &entry("writer-a", WRITER_A, "write", "[\"a\"]")
        + &entry("reader-a", reader_key, "read", "[\"a\"]");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Enroll,
    Identify,
    Verify,
    Embed,
    DeleteIdentity,
    GetIdentity,
    ListIdentities,
    GetServiceInfo,
    CreateGallery,
    ListGalleries,
    DropGallery,
    ExportGallery,
    ImportGallery,
    CompactStorage,
}

const ALL: [Rpc; 14] = [
    Rpc::Enroll,
    Rpc::Identify,
    Rpc::Verify,
    Rpc::Embed,
    Rpc::DeleteIdentity,
    Rpc::GetIdentity,
    Rpc::ListIdentities,
    Rpc::GetServiceInfo,
    Rpc::CreateGallery,
    Rpc::ListGalleries,
    Rpc::DropGallery,
    Rpc::ExportGallery,
    Rpc::ImportGallery,
    Rpc::CompactStorage,
];

impl Rpc {
    /// The role the RPC needs.
    fn role(self) -> &'static str {
        match self {
            Rpc::Enroll | Rpc::DeleteIdentity => "write",
            Rpc::CreateGallery
            | Rpc::DropGallery
            | Rpc::ExportGallery
            | Rpc::ImportGallery
            | Rpc::CompactStorage => "admin",
            _ => "read",
        }
    }

    /// Whether the RPC names a gallery.
    fn scoped(self) -> bool {
        !matches!(
            self,
            Rpc::Embed | Rpc::GetServiceInfo | Rpc::ListGalleries | Rpc::CompactStorage
        )
    }
}

/// Calls `rpc` on `gallery` with `key`; the status (OK included).
async fn call(
    client: &mut FaceServiceClient<Channel>,
    rpc: Rpc,
    gallery: &str,
    key: Option<&str>,
) -> tonic::Status {
    let face = raw_image(&lfw_crop("Ann_Veneman", 3));
    let g = gallery.to_string();
    let result = match rpc {
        Rpc::Enroll => client
            .enroll(with_key(
                pb::EnrollRequest {
                    identity_id: format!("via-{}", key.unwrap_or("none").len()),
                    images: vec![face],
                    gallery: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::Identify => client
            .identify(with_key(
                pb::IdentifyRequest {
                    image: Some(face),
                    gallery: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::Verify => client
            .verify(with_key(
                pb::VerifyRequest {
                    probe: Some(face),
                    reference: Some(pb::verify_request::Reference::IdentityId("member".into())),
                    gallery: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::Embed => client
            .embed(with_key(pb::EmbedRequest { images: vec![face] }, key))
            .await
            .map(|_| ()),
        Rpc::DeleteIdentity => client
            .delete_identity(with_key(
                pb::DeleteIdentityRequest {
                    identity_id: "to-delete".into(),
                    gallery: g,
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::GetIdentity => client
            .get_identity(with_key(
                pb::GetIdentityRequest {
                    identity_id: "member".into(),
                    gallery: g,
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::ListIdentities => client
            .list_identities(with_key(
                pb::ListIdentitiesRequest {
                    gallery: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::GetServiceInfo => client
            .get_service_info(with_key(pb::GetServiceInfoRequest {}, key))
            .await
            .map(|_| ()),
        Rpc::CreateGallery => client
            .create_gallery(with_key(
                pb::CreateGalleryRequest {
                    name: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::ListGalleries => client
            .list_galleries(with_key(pb::ListGalleriesRequest {}, key))
            .await
            .map(|_| ()),
        Rpc::DropGallery => client
            .drop_gallery(with_key(pb::DropGalleryRequest { name: g }, key))
            .await
            .map(|_| ()),
        Rpc::ExportGallery => client
            .export_gallery(with_key(
                pb::ExportGalleryRequest {
                    gallery: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::ImportGallery => client
            .import_gallery(with_key(
                pb::ImportGalleryRequest {
                    gallery: g,
                    ..Default::default()
                },
                key,
            ))
            .await
            .map(|_| ()),
        Rpc::CompactStorage => client
            .compact_storage(with_key(pb::CompactStorageRequest {}, key))
            .await
            .map(|_| ()),
    };
    result.err().unwrap_or_else(|| tonic::Status::ok(""))
}

fn auth_code(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

#[tokio::test]
async fn every_rpc_checks_key_role_and_gallery() {
    let dir = std::env::temp_dir().join(format!("vargid-auth-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.toml");
    write_keys(&keys, READER_A);
    let server = Server::start(&[("VARGID_AUTH__KEYS_FILE", keys.to_str().unwrap())]);
    let mut client = server.client().await;

    // Two tenants' galleries, each with a member.
    for g in ["a", "b"] {
        let created = call(&mut client, Rpc::CreateGallery, g, Some(ADMIN)).await;
        assert_eq!(created.code(), Code::Ok, "{created:?}");
        client
            .enroll(with_key(
                pb::EnrollRequest {
                    identity_id: "member".into(),
                    images: vec![raw_image(&lfw_crop("George_W_Bush", 7))],
                    gallery: g.into(),
                    ..Default::default()
                },
                Some(ADMIN),
            ))
            .await
            .expect("admin enrolls");
    }

    for rpc in ALL {
        // No key, and a key nobody issued.
        for key in [None, Some("not-a-key")] {
            let status = call(&mut client, rpc, "a", key).await;
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{rpc:?} {key:?}: {status:?}"
            );
        }
        // A read-only key: read RPCs pass the check, the others are denied.
        let status = call(&mut client, rpc, "a", Some(READER_A)).await;
        if rpc.role() == "read" {
            assert!(!auth_code(status.code()), "{rpc:?} reader: {status:?}");
        } else {
            assert_eq!(
                status.code(),
                Code::PermissionDenied,
                "{rpc:?} reader: {status:?}"
            );
            assert!(status.message().contains(rpc.role()), "{status:?}");
        }
        // Another tenant's gallery answers exactly as a gallery that does not exist.
        if rpc.scoped() {
            let key = if rpc.role() == "admin" {
                ADMIN
            } else {
                WRITER_A
            };
            if key == WRITER_A {
                let foreign = call(&mut client, rpc, "b", Some(key)).await;
                let missing = call(&mut client, rpc, "zzz", Some(ADMIN)).await;
                assert_eq!(foreign.code(), Code::NotFound, "{rpc:?} on b: {foreign:?}");
                assert_eq!(
                    foreign.message().replace("\"b\"", "\"zzz\""),
                    missing.message(),
                    "{rpc:?}: a foreign gallery must look missing"
                );
            }
        }
        // The admin key passes every check (dropping a scratch gallery, not "a").
        let target = if matches!(rpc, Rpc::DropGallery) {
            call(&mut client, Rpc::CreateGallery, "scratch", Some(ADMIN)).await;
            "scratch"
        } else {
            "a"
        };
        let status = call(&mut client, rpc, target, Some(ADMIN)).await;
        assert!(!auth_code(status.code()), "{rpc:?} admin: {status:?}");
    }

    // A tenant cannot learn whether an identity exists in another gallery.
    let mut answers = Vec::new();
    for id in ["member", "nobody"] {
        let status = client
            .get_identity(with_key(
                pb::GetIdentityRequest {
                    identity_id: id.into(),
                    gallery: "b".into(),
                },
                Some(READER_A),
            ))
            .await
            .unwrap_err();
        answers.push((status.code(), status.message().to_string()));
    }
    assert_eq!(answers[0], answers[1]);

    // Listing shows only the key's galleries.
    let listed = client
        .list_galleries(with_key(pb::ListGalleriesRequest {}, Some(READER_A)))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.galleries.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["a"]);

    // Rotation without a restart: the reader's key is replaced in the file.
    let rotated = "reader-a-rotated-0123456789abcdef";
    write_keys(&keys, rotated);
    let mut switched = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let old = call(&mut client, Rpc::ListGalleries, "", Some(READER_A)).await;
        let new = call(&mut client, Rpc::ListGalleries, "", Some(rotated)).await;
        if old.code() == Code::Unauthenticated && new.code() == Code::Ok {
            switched = true;
            break;
        }
    }
    assert!(switched, "the rotated key file was not picked up");
    let _ = std::fs::remove_dir_all(&dir);
}
