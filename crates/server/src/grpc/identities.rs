//! Identity handlers: DeleteIdentity, GetIdentity and ListIdentities.

use tonic::{Request, Status};
use vargid_proto::v1 as pb;
use vargid_store::{Applied, Change};

use super::face_service::FaceServiceImpl;
use super::{convert, status};
use crate::auth::Role;

pub(super) async fn delete_identity(
    svc: &FaceServiceImpl,
    request: Request<pb::DeleteIdentityRequest>,
) -> Result<pb::DeleteIdentityResponse, Status> {
    let caller = svc.admit(&request, "DeleteIdentity", Role::Write)?;
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let id = convert::identity_id("identity_id", &req.identity_id)?;
    let gallery = svc.gallery(&req.gallery)?;
    let (_, applied) = svc
        .galleries
        .apply(Change::DeleteIdentity {
            gallery: gallery.record.name.clone(),
            identity_id: id.to_string(),
        })
        .await
        .map_err(status::gallery)?;
    let deleted = match applied {
        Applied::Deleted { face_ids, .. } => face_ids.len(),
        _ => {
            return Err(Status::internal(
                "the store answered a deletion with another change",
            ))
        }
    };
    svc.record_gallery_size();
    tracing::info!(gallery = %gallery.record.name, identity_id = id, faces = deleted, "deleted");
    tracing::info!(target: "vargid::audit", action = "delete", key_id = caller.name(), gallery = %gallery.record.name, identity_id = id, faces = deleted);
    Ok(pb::DeleteIdentityResponse {
        deleted_faces: u32::try_from(deleted).unwrap_or(u32::MAX),
    })
}

pub(super) async fn get_identity(
    svc: &FaceServiceImpl,
    request: Request<pb::GetIdentityRequest>,
) -> Result<pb::Identity, Status> {
    let caller = svc.admit(&request, "GetIdentity", Role::Read)?;
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let id = convert::identity_id("identity_id", &req.identity_id)?;
    svc.gallery(&req.gallery)?
        .index
        .get(id)
        .map(convert::identity)
        .ok_or_else(|| Status::not_found(format!("identity {id:?} not found")))
}

pub(super) async fn list_identities(
    svc: &FaceServiceImpl,
    request: Request<pb::ListIdentitiesRequest>,
) -> Result<pb::ListIdentitiesResponse, Status> {
    let caller = svc.admit(&request, "ListIdentities", Role::Read)?;
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let page_size = convert::page_size(req.page_size)?;
    let after = convert::page_token(&req.page_token)?;
    let page = svc
        .gallery(&req.gallery)?
        .index
        .list(after.as_deref(), page_size);
    Ok(pb::ListIdentitiesResponse {
        identities: page.identities.into_iter().map(convert::identity).collect(),
        next_page_token: convert::next_page_token(page.next_after),
        total_size: page.total as u64,
    })
}
