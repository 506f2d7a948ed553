//! Assembles the service from the settings and serves it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use vargid_model::{
    DecodeLimits, Detector, DetectorOptions, Embedder, EmbedderOptions, ExecutionProvider,
};
use vargid_proto::v1::face_service_server::FaceServiceServer;

use crate::auth::Authenticator;
use crate::config::{ModelSettings, Settings};
use crate::engine::{Engine, EngineConfig};
use crate::faces::{FacePipeline, FaceRules};
use crate::galleries::Galleries;
use crate::grpc::{FaceServiceImpl, ServiceLimits};
use crate::match_scores::MatchScores;
use crate::metrics;
use crate::provider_choice;
use crate::thread_priority;
use vargid_store::ModelTag;

/// How the cores are shared: inference threads, decoding threads, FAISS threads.
#[derive(Debug, Clone, Copy)]
pub struct ThreadBudget {
    pub cores: usize,
    pub intra_op_per_instance: usize,
    pub preprocess: usize,
}

impl ThreadBudget {
    pub fn from_settings(settings: &Settings) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let instances = settings.model.instances.max(1);
        let intra_op_per_instance = match settings.model.intra_op_threads {
            0 => (cores / instances).max(1),
            n => n,
        };
        let preprocess = match settings.batching.preprocess_threads {
            0 => cores,
            n => n,
        };
        Self {
            cores,
            intra_op_per_instance,
            preprocess,
        }
    }
}

fn embedder_options(settings: &Settings, budget: ThreadBudget) -> EmbedderOptions {
    let m = &settings.model;
    EmbedderOptions {
        execution_provider: match m.execution_provider.as_str() {
            "cuda" => ExecutionProvider::Cuda {
                device_id: m.cuda_device_id,
            },
            "openvino" => ExecutionProvider::OpenVino,
            _ => ExecutionProvider::Cpu,
        },
        intra_op_threads: budget.intra_op_per_instance,
        intra_op_spinning: m.intra_op_spinning,
        onnxruntime_library: onnxruntime_library(m),
        flip_test: m.flip_test,
    }
}

/// Where `scripts/install-deps.sh` puts the library, relative to the repository root.
const INSTALLED_ONNXRUNTIME: &str = ".deps/onnxruntime/libonnxruntime.so";
/// Where `scripts/install-ort-openvino.sh` puts the OpenVINO build.
const INSTALLED_ONNXRUNTIME_OPENVINO: &str = ".deps/onnxruntime-openvino/libonnxruntime.so";

/// ONNX Runtime's OpenVINO build: the configured one, else the installed one.
fn openvino_library(model: &ModelSettings) -> std::path::PathBuf {
    match model.openvino_library.as_str() {
        "" => INSTALLED_ONNXRUNTIME_OPENVINO.into(),
        configured => configured.into(),
    }
}

/// The library to load. For the OpenVINO provider its build (`ORT_DYLIB_PATH` and
/// `model.onnxruntime_library` name the CPU build, which has no OpenVINO provider);
/// otherwise the configured library, else `ORT_DYLIB_PATH` (read by the model crate),
/// else the installed CPU build. One library serves the whole process, detector
/// included.
fn onnxruntime_library(model: &ModelSettings) -> Option<std::path::PathBuf> {
    if model.execution_provider == "openvino" {
        return Some(openvino_library(model));
    }
    if !model.onnxruntime_library.is_empty() {
        return Some(model.onnxruntime_library.clone().into());
    }
    if std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| !p.is_empty()) {
        return None;
    }
    let installed = std::path::Path::new(INSTALLED_ONNXRUNTIME);
    installed.is_file().then(|| installed.to_path_buf())
}

/// One single-threaded detector session per decoding slot: photos are detected in
/// parallel, each on one core, as they are decoded. YuNet stays on ONNX Runtime's CPU
/// provider with `openvino` too: on OpenVINO, Identify of whole photos measured about
/// 13% slower (docs/benchmarks.md, "OpenVINO").
async fn load_detectors(settings: &Settings, count: usize) -> anyhow::Result<Vec<Detector>> {
    let d = &settings.detection;
    let options = DetectorOptions {
        score_threshold: d.score_threshold,
        nms_threshold: d.nms_threshold,
        max_side: d.max_side,
        intra_op_threads: 1,
        ..DetectorOptions::default()
    };
    let library = onnxruntime_library(&settings.model);
    let path = d.model_path.clone();
    let detectors = tokio::task::spawn_blocking(move || {
        (0..count.max(1))
            .map(|_| Detector::load(&path, options, library.as_deref()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .context("detector loader panicked")?
    .with_context(|| format!("loading face detector {}", d.model_path.display()))?;
    tracing::info!(path = %d.model_path.display(), sessions = detectors.len(), "face detector loaded");
    Ok(detectors)
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `server.shutdown_grace_ms`.
pub async fn run(
    mut settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cpu = provider_choice::Cpu::detect();
    let choice = provider_choice::choose(&settings.model, cpu, &openvino_library(&settings.model));
    tracing::info!(provider = choice.provider, reason = %choice.reason, "execution provider");
    // Everything below reads the provider from the settings.
    settings.model.execution_provider = choice.provider.to_string();
    let budget = ThreadBudget::from_settings(&settings);
    tracing::info!(
        cores = budget.cores,
        instances = settings.model.instances,
        intra_op_threads = budget.intra_op_per_instance,
        preprocess_threads = budget.preprocess,
        "thread budget"
    );

    let options = embedder_options(&settings, budget);
    let mut embedders = Vec::with_capacity(settings.model.instances);
    for _ in 0..settings.model.instances {
        let path = settings.model.path.clone();
        let options = options.clone();
        // Not on the blocking pool: its threads run at server.io_threads_nice, and the
        // threads the runtime starts while loading would inherit it.
        let embedder = thread_priority::run_on_new_thread("vargid-load", move || {
            Embedder::load(&path, &options)
        })
        .await
        .context("model loader panicked")?
        .with_context(|| format!("loading model {}", settings.model.path.display()))?;
        embedders.push(embedder);
    }
    let info = embedders[0].info().clone();
    let detectors = load_detectors(&settings, budget.preprocess).await?;
    tracing::info!(
        model = %info.name,
        version = %info.version,
        precision = %info.precision,
        embedding_size = info.embedding_size,
        execution_provider = info.execution_provider,
        "model loaded"
    );
    if let Some(warning) = provider_choice::int8_warning(&info.precision, cpu) {
        tracing::warn!(precision = %info.precision, "{warning}");
    }

    std::fs::create_dir_all(&settings.gallery.data_dir).with_context(|| {
        format!(
            "creating data directory {}",
            settings.gallery.data_dir.display()
        )
    })?;
    let galleries = Arc::new(
        Galleries::open(
            &settings.gallery.data_dir,
            settings.gallery.shared_record(),
            ModelTag {
                name: info.name.clone(),
                version: info.version.clone(),
                embedding_size: info.embedding_size,
            },
            &settings.gallery.default_index()?,
            settings.gallery.match_threshold,
        )
        .await
        .with_context(|| {
            format!(
                "opening the galleries in {}",
                settings.gallery.data_dir.display()
            )
        })?,
    );
    for g in galleries.list() {
        tracing::info!(
            gallery = %g.record.name,
            index = %g.record.index,
            identities = g.index.identity_count(),
            faces = g.index.face_count(),
            "gallery ready"
        );
    }

    let metrics_handle = match metrics::install(settings.batching.max_batch_size) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    };
    let metrics_addr = match (&metrics_handle, settings.metrics.listen.as_str()) {
        (Some(handle), listen) if !listen.is_empty() => {
            Some(serve_metrics(listen, handle.clone()).await?)
        }
        _ => None,
    };

    let engine = Engine::start(
        embedders,
        EngineConfig {
            max_batch_size: settings.batching.max_batch_size,
            max_queue_delay: Duration::from_millis(settings.batching.max_queue_delay_ms),
            queue_capacity: settings.batching.queue_capacity,
            max_queue_wait: Duration::from_millis(settings.batching.max_queue_wait_ms),
        },
    );
    let limits = DecodeLimits {
        max_encoded_bytes: settings.limits.max_image_bytes,
        max_pixels: settings.limits.max_image_pixels,
    };
    let d = &settings.detection;
    let rules = FaceRules {
        min_face_size: d.min_face_size,
        min_score: d.min_score,
        max_faces_per_image: d.max_faces_per_image,
    };
    let pipeline = FacePipeline::new(engine, limits, budget.preprocess, detectors, rules);
    let auth = Arc::new(
        Authenticator::load(
            (!settings.auth.keys_file.is_empty())
                .then(|| std::path::Path::new(&settings.auth.keys_file)),
        )
        .context("loading API keys")?,
    );
    if auth.is_open() {
        if settings.server.listen.ip().is_loopback() {
            tracing::info!("no API keys configured: open access, on loopback only");
        } else {
            tracing::warn!(
                listen = %settings.server.listen,
                "no API keys configured and not on loopback: ANYONE who reaches this port \
                 can read, enroll and delete (auth.allow_unauthenticated_remote = true)"
            );
        }
    } else {
        tracing::info!(keys = auth.key_count(), file = %settings.auth.keys_file, "API keys loaded");
        auth.watch(Duration::from_secs(2));
    }
    let match_scores = Arc::new(MatchScores::default());
    if settings.metrics.match_log_interval_s > 0 {
        let every = Duration::from_secs(settings.metrics.match_log_interval_s);
        tokio::spawn(match_scores.clone().log_every(every));
    }
    let service = FaceServiceImpl::new(
        pipeline,
        galleries.clone(),
        ServiceLimits {
            max_images_per_request: settings.limits.max_images_per_request,
            max_top_k: settings.limits.max_top_k,
            default_index: settings.gallery.index.clone(),
            index_defaults: settings.gallery.index_defaults(),
            match_threshold: settings.gallery.match_threshold,
            request_timeout: Duration::from_millis(settings.server.request_timeout_ms),
        },
        auth,
        match_scores,
    );
    let face_service = FaceServiceServer::new(service)
        .max_decoding_message_size(settings.server.max_message_bytes);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<FaceServiceServer<FaceServiceImpl>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vargid_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building reflection v1")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vargid_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building reflection v1alpha")?;

    let listener = TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("binding {}", settings.server.listen))?;
    let grpc_addr = listener.local_addr()?;
    let tls = tls_config(&settings)?;
    let transport = match (&tls, settings.server.tls_client_ca.is_empty()) {
        (None, _) => "plaintext",
        (Some(_), true) => "tls",
        (Some(_), false) => "mtls",
    };
    if tls.is_none() && !grpc_addr.ip().is_loopback() {
        tracing::warn!(
            listen = %grpc_addr,
            "PLAINTEXT gRPC on a non-loopback address (server.allow_plaintext_remote): \
             requests, keys and face images cross the network unencrypted"
        );
    }
    tracing::info!(
        grpc = %grpc_addr,
        metrics = %metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        transport,
        "vargid listening"
    );

    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold small responses
    // back for ~40 ms: more than an inference takes.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("TLS configuration")?;
    }
    let server = builder
        .timeout(Duration::from_millis(settings.server.request_timeout_ms))
        .load_shed(true)
        .concurrency_limit_per_connection(settings.server.max_in_flight_per_connection)
        .max_concurrent_streams(Some(settings.server.max_concurrent_streams))
        .trace_fn(|req| tracing::info_span!("grpc", method = %req.uri().path()))
        .layer(
            ServiceBuilder::new()
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    settings.server.max_in_flight,
                )),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(face_service)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    let mut server = tokio::spawn(server);

    tokio::select! {
        result = &mut server => {
            return result.context("server task")?.context("gRPC server failed");
        }
        () = shutdown => {}
    }
    health
        .set_not_serving::<FaceServiceServer<FaceServiceImpl>>()
        .await;
    let _ = stop_tx.send(());
    let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result
            .context("server task")?
            .context("gRPC server failed")?,
        Err(_) => {
            tracing::warn!(
                grace_ms = settings.server.shutdown_grace_ms,
                "in-flight requests outlived the grace period"
            );
            server.abort();
        }
    }
    // No request runs any more: the indexes match the record, so snapshot them.
    galleries.write_snapshots();
    tracing::info!("vargid stopped");
    Ok(())
}

/// The TLS settings from `server.tls_*`, if any: the server's identity, and the CA
/// that client certificates must chain to for mutual TLS.
fn tls_config(settings: &Settings) -> anyhow::Result<Option<ServerTlsConfig>> {
    let s = &settings.server;
    if s.tls_cert.is_empty() {
        return Ok(None);
    }
    let read = |path: &str| std::fs::read(path).with_context(|| format!("reading {path}"));
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&s.tls_cert)?, read(&s.tls_key)?));
    if !s.tls_client_ca.is_empty() {
        tls = tls.client_ca_root(Certificate::from_pem(read(&s.tls_client_ca)?));
    }
    Ok(Some(tls))
}

/// Serves `GET /metrics` in the Prometheus text format; returns the bound address.
async fn serve_metrics(
    listen: &str,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding metrics listener {listen}"))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(addr)
}
