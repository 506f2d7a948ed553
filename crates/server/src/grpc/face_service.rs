//! `vargid.v1.FaceService`: the service state and the trait implementation, which
//! only times and counts each call (by method and code) and hands it to the handler of
//! its area: `recognition` (the face pipeline), `identities` and `gallery_admin`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_server::FaceService;

use super::{gallery_admin, identities, recognition, status};
use crate::auth::{Authenticator, Caller, Role};
use crate::faces::FacePipeline;
use crate::galleries::{Galleries, LiveGallery};
use crate::match_scores::MatchScores;
use crate::metrics;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    pub max_images_per_request: usize,
    pub max_top_k: usize,
    /// CreateGallery's layout when a request names none (config `gallery.index`).
    pub default_index: String,
    /// CreateGallery's HNSW parameters when a request leaves them unset.
    pub index_defaults: vargid_index::IndexDefaults,
    /// The match threshold of galleries created without one.
    pub match_threshold: f32,
    /// The server's request timeout: the deadline of calls that send none.
    pub request_timeout: Duration,
}

pub struct FaceServiceImpl {
    pub(super) pipeline: FacePipeline,
    pub(super) galleries: Arc<Galleries>,
    pub(super) limits: ServiceLimits,
    auth: Arc<Authenticator>,
    pub(super) match_scores: Arc<MatchScores>,
}

impl FaceServiceImpl {
    pub fn new(
        pipeline: FacePipeline,
        galleries: Arc<Galleries>,
        limits: ServiceLimits,
        auth: Arc<Authenticator>,
        match_scores: Arc<MatchScores>,
    ) -> Self {
        let service = Self {
            pipeline,
            galleries,
            limits,
            auth,
            match_scores,
        };
        service.record_gallery_size();
        service
    }

    /// The authenticated caller, if its key has `role` (see `auth` for the codes).
    pub(super) fn admit<T>(
        &self,
        request: &Request<T>,
        method: &str,
        role: Role,
    ) -> Result<Caller, Status> {
        let caller = self.auth.authenticate(request.metadata())?;
        caller.require(method, role)?;
        Ok(caller)
    }

    pub(super) fn gallery(&self, name: &str) -> Result<Arc<LiveGallery>, Status> {
        self.galleries.get(name).map_err(status::gallery)
    }

    /// Templates and identities over the galleries `counted` accepts (by name).
    fn totals(&self, counted: impl Fn(&str) -> bool) -> (usize, usize) {
        self.galleries
            .list()
            .iter()
            .filter(|g| counted(&g.record.name))
            .fold((0, 0), |(f, i), g| {
                (f + g.index.face_count(), i + g.index.identity_count())
            })
    }

    pub(super) fn record_gallery_size(&self) {
        let (faces, identities) = self.totals(|_| true);
        metrics::gallery_size(faces, identities);
    }
}

/// Runs a handler, recording its count and latency by method and status code.
async fn observed<T>(
    method: &'static str,
    handler: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = handler.await;
    let code = result
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    metrics::request(method, code, started.elapsed());
    if let Err(status) = &result {
        tracing::debug!(method, code = ?status.code(), message = status.message(), "request refused");
    }
    result.map(Response::new)
}

#[tonic::async_trait]
impl FaceService for FaceServiceImpl {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        observed("Enroll", recognition::enroll(self, request)).await
    }

    async fn identify(
        &self,
        request: Request<pb::IdentifyRequest>,
    ) -> Result<Response<pb::IdentifyResponse>, Status> {
        observed("Identify", recognition::identify(self, request)).await
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        observed("Verify", recognition::verify(self, request)).await
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        observed("Embed", recognition::embed(self, request)).await
    }

    async fn delete_identity(
        &self,
        request: Request<pb::DeleteIdentityRequest>,
    ) -> Result<Response<pb::DeleteIdentityResponse>, Status> {
        observed("DeleteIdentity", identities::delete_identity(self, request)).await
    }

    async fn get_identity(
        &self,
        request: Request<pb::GetIdentityRequest>,
    ) -> Result<Response<pb::Identity>, Status> {
        observed("GetIdentity", identities::get_identity(self, request)).await
    }

    async fn list_identities(
        &self,
        request: Request<pb::ListIdentitiesRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        observed("ListIdentities", identities::list_identities(self, request)).await
    }

    async fn get_service_info(
        &self,
        request: Request<pb::GetServiceInfoRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        observed("GetServiceInfo", get_service_info(self, request)).await
    }

    async fn create_gallery(
        &self,
        request: Request<pb::CreateGalleryRequest>,
    ) -> Result<Response<pb::GalleryInfo>, Status> {
        observed(
            "CreateGallery",
            gallery_admin::create_gallery(self, request),
        )
        .await
    }

    async fn list_galleries(
        &self,
        request: Request<pb::ListGalleriesRequest>,
    ) -> Result<Response<pb::ListGalleriesResponse>, Status> {
        observed(
            "ListGalleries",
            gallery_admin::list_galleries(self, request),
        )
        .await
    }

    async fn drop_gallery(
        &self,
        request: Request<pb::DropGalleryRequest>,
    ) -> Result<Response<pb::DropGalleryResponse>, Status> {
        observed("DropGallery", gallery_admin::drop_gallery(self, request)).await
    }

    async fn export_gallery(
        &self,
        request: Request<pb::ExportGalleryRequest>,
    ) -> Result<Response<pb::ExportGalleryResponse>, Status> {
        observed(
            "ExportGallery",
            gallery_admin::export_gallery(self, request),
        )
        .await
    }

    async fn import_gallery(
        &self,
        request: Request<pb::ImportGalleryRequest>,
    ) -> Result<Response<pb::ImportGalleryResponse>, Status> {
        observed(
            "ImportGallery",
            gallery_admin::import_gallery(self, request),
        )
        .await
    }

    async fn compact_storage(
        &self,
        request: Request<pb::CompactStorageRequest>,
    ) -> Result<Response<pb::CompactStorageResponse>, Status> {
        observed(
            "CompactStorage",
            gallery_admin::compact_storage(self, request),
        )
        .await
    }
}

async fn get_service_info(
    svc: &FaceServiceImpl,
    request: Request<pb::GetServiceInfoRequest>,
) -> Result<pb::ServiceInfo, Status> {
    let caller = svc.admit(&request, "GetServiceInfo", Role::Read)?;
    let info = svc.pipeline.engine().model_info();
    // Only the galleries this key may see are counted.
    let (faces, identities) = svc.totals(|name| caller.sees(name));
    Ok(pb::ServiceInfo {
        model_name: info.name.clone(),
        model_version: info.version.clone(),
        embedding_size: u32::try_from(info.embedding_size).unwrap_or(u32::MAX),
        execution_provider: info.execution_provider.to_string(),
        gallery_size: faces as u64,
        identity_count: identities as u64,
        match_threshold: svc.limits.match_threshold,
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        max_batch_size: u32::try_from(svc.pipeline.engine().max_batch_size()).unwrap_or(u32::MAX),
        flip_test: info.flip_test,
        model_precision: info.precision.clone(),
    })
}
