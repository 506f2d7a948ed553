//! Gallery administration: CreateGallery, ListGalleries, DropGallery, ExportGallery,
//! ImportGallery and CompactStorage.

use tonic::{Request, Status};
use vargid_index::{IndexRequest, IndexSpec};
use vargid_proto::v1 as pb;
use vargid_store::Change;

use super::face_service::FaceServiceImpl;
use super::{convert, status};
use crate::auth::Role;

/// Most templates one ImportGallery request may carry.
const MAX_IMPORT_TEMPLATES: usize = 10_000;

pub(super) async fn create_gallery(
    svc: &FaceServiceImpl,
    request: Request<pb::CreateGalleryRequest>,
) -> Result<pb::GalleryInfo, Status> {
    let caller = svc.admit(&request, "CreateGallery", Role::Admin)?;
    let req = request.into_inner();
    caller.gallery(&req.name)?;
    let layout = if req.index.is_empty() {
        svc.limits.default_index.as_str()
    } else {
        req.index.as_str()
    };
    let asked = req.index_parameters.unwrap_or_default();
    let requested = IndexRequest {
        hnsw_m: asked.hnsw_m,
        hnsw_ef_construction: asked.hnsw_ef_construction,
        hnsw_ef_search: asked.hnsw_ef_search,
        ivf_nlist: asked.ivf_nlist,
        ivf_nprobe: asked.ivf_nprobe,
        ivf_rerank: asked.ivf_rerank,
    };
    let index = IndexSpec::resolve(layout, requested, svc.limits.index_defaults)
        .map_err(|e| status::gallery(e.into()))?;
    let threshold = convert::threshold(
        "match_threshold",
        req.match_threshold,
        svc.limits.match_threshold,
    )?;
    let live = svc
        .galleries
        .create(&req.name, &index, threshold)
        .await
        .map_err(status::gallery)?;
    tracing::info!(gallery = %req.name, index = %index.description, parameters = %index.parameters(), "gallery created");
    Ok(convert::gallery_info(&live))
}

pub(super) async fn list_galleries(
    svc: &FaceServiceImpl,
    request: Request<pb::ListGalleriesRequest>,
) -> Result<pb::ListGalleriesResponse, Status> {
    let caller = svc.admit(&request, "ListGalleries", Role::Read)?;
    Ok(pb::ListGalleriesResponse {
        galleries: svc
            .galleries
            .list()
            .iter()
            .filter(|g| caller.sees(&g.record.name))
            .map(|g| convert::gallery_info(g))
            .collect(),
    })
}

pub(super) async fn drop_gallery(
    svc: &FaceServiceImpl,
    request: Request<pb::DropGalleryRequest>,
) -> Result<pb::DropGalleryResponse, Status> {
    let caller = svc.admit(&request, "DropGallery", Role::Admin)?;
    let req = request.into_inner();
    caller.gallery(&req.name)?;
    svc.galleries
        .drop_gallery(&req.name)
        .await
        .map_err(status::gallery)?;
    svc.record_gallery_size();
    tracing::info!(gallery = %req.name, "gallery dropped");
    Ok(pb::DropGalleryResponse {})
}

pub(super) async fn export_gallery(
    svc: &FaceServiceImpl,
    request: Request<pb::ExportGalleryRequest>,
) -> Result<pb::ExportGalleryResponse, Status> {
    let caller = svc.admit(&request, "ExportGallery", Role::Admin)?;
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let page_size = convert::page_size(req.page_size)?;
    let after = convert::page_token(&req.page_token)?;
    let gallery = svc.gallery(&req.gallery)?;
    // One more than asked tells whether another page follows.
    let mut rows = svc
        .galleries
        .store()
        .export_page(&gallery.record.name, after.as_deref(), page_size + 1)
        .await
        .map_err(status::store)?;
    let more = rows.len() > page_size;
    rows.truncate(page_size);
    let next = more
        .then(|| rows.last().map(|(i, _)| i.identity_id.clone()))
        .flatten();
    Ok(pb::ExportGalleryResponse {
        model: Some(convert::model_tag(&gallery.record.model)),
        identities: rows.into_iter().map(convert::exported_identity).collect(),
        next_page_token: convert::next_page_token(next),
    })
}

pub(super) async fn import_gallery(
    svc: &FaceServiceImpl,
    request: Request<pb::ImportGalleryRequest>,
) -> Result<pb::ImportGalleryResponse, Status> {
    let caller = svc.admit(&request, "ImportGallery", Role::Admin)?;
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let gallery = svc.gallery(&req.gallery)?;
    let stored = &gallery.record.model;
    convert::same_model("model", req.model, &gallery.record.name, stored)?;
    let identities =
        convert::imported_identities(req.identities, stored.embedding_size, MAX_IMPORT_TEMPLATES)?;
    let faces: usize = identities.iter().map(|(_, t)| t.len()).sum();
    let count = identities.len();
    svc.galleries
        .apply(Change::Import {
            gallery: gallery.record.name.clone(),
            identities,
        })
        .await
        .map_err(status::gallery)?;
    svc.record_gallery_size();
    tracing::info!(gallery = %gallery.record.name, identities = count, faces, "imported");
    Ok(pb::ImportGalleryResponse {
        identities: count as u64,
        faces: faces as u64,
    })
}

pub(super) async fn compact_storage(
    svc: &FaceServiceImpl,
    request: Request<pb::CompactStorageRequest>,
) -> Result<pb::CompactStorageResponse, Status> {
    let caller = svc.admit(&request, "CompactStorage", Role::Admin)?;
    svc.galleries.compact().await.map_err(status::gallery)?;
    tracing::info!(target: "vargid::audit", action = "compact", key_id = caller.name());
    Ok(pb::CompactStorageResponse {})
}
