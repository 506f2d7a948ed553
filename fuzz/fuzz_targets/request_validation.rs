//! Request validation from raw protobuf bytes: each RPC's request message is decoded
//! as tonic would decode it, then put through the field checks its handler runs
//! (crates/server/src/grpc/face_service.rs), with the service's default limits.
//! Every refusal must be INVALID_ARGUMENT with a message naming the field.
//!
//! Input: one byte choosing the RPC, then the encoded request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Status};
use vargid_proto::v1 as pb;
use vargid_request::fields::{identity_id, metadata, page_size, page_token, threshold};
use vargid_request::image::{image, images};
use vargid_request::import::imported_identities;

const MAX_IMAGES_PER_REQUEST: usize = 32;
const MAX_IMPORT_TEMPLATES: usize = 10_000;
const EMBEDDING_SIZE: usize = 128;

fn checked(result: Result<(), Status>) {
    if let Err(status) = result {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(!status.message().is_empty());
    }
}

fn validate(rpc: u8, bytes: &[u8]) -> Result<(), Status> {
    // A body that does not decode is refused by tonic before any handler runs.
    macro_rules! decode {
        ($t:ty) => {
            match <$t>::decode(bytes) {
                Ok(request) => request,
                Err(_) => return Ok(()),
            }
        };
    }
    match rpc % 10 {
        0 => {
            let req = decode!(pb::EnrollRequest);
            identity_id("identity_id", &req.identity_id)?;
            images("images", req.images, MAX_IMAGES_PER_REQUEST)?;
            metadata(req.metadata);
        }
        1 => {
            let req = decode!(pb::IdentifyRequest);
            threshold("threshold", req.threshold, 0.36)?;
            image("image", req.image)?;
        }
        2 => {
            let req = decode!(pb::VerifyRequest);
            threshold("threshold", req.threshold, 0.36)?;
            match req.reference {
                Some(pb::verify_request::Reference::IdentityId(id)) => {
                    identity_id("identity_id", &id)?;
                    image("probe", req.probe)?;
                }
                Some(pb::verify_request::Reference::Image(other)) => {
                    image("probe", req.probe)?;
                    image("image", Some(other))?;
                }
                None => {}
            }
        }
        3 => {
            let req = decode!(pb::EmbedRequest);
            images("images", req.images, MAX_IMAGES_PER_REQUEST)?;
        }
        4 => {
            let req = decode!(pb::DeleteIdentityRequest);
            identity_id("identity_id", &req.identity_id)?;
        }
        9 => {
            let req = decode!(pb::GetIdentityRequest);
            identity_id("identity_id", &req.identity_id)?;
        }
        5 => {
            let req = decode!(pb::ListIdentitiesRequest);
            page_size(req.page_size)?;
            page_token(&req.page_token)?;
        }
        6 => {
            let req = decode!(pb::CreateGalleryRequest);
            threshold("match_threshold", req.match_threshold, 0.36)?;
        }
        7 => {
            let req = decode!(pb::ExportGalleryRequest);
            page_size(req.page_size)?;
            page_token(&req.page_token)?;
        }
        _ => {
            let req = decode!(pb::ImportGalleryRequest);
            imported_identities(req.identities, EMBEDDING_SIZE, MAX_IMPORT_TEMPLATES)?;
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if let Some((&rpc, bytes)) = data.split_first() {
        checked(validate(rpc, bytes));
    }
});
