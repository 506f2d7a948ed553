//! Settings: embedded defaults, then an optional TOML file, then `VARGID_...`
//! environment variables (sections joined by `__`, e.g. `VARGID_MODEL__PATH`).
//! `config/vargid.example.toml` documents every option with its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vargid_index::{
    HnswParameters, IndexDefaults, IndexError, IndexRequest, IndexSpec, IvfParameters,
    DEFAULT_RERANK,
};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub metrics: MetricsSettings,
    pub model: ModelSettings,
    pub batching: BatchingSettings,
    pub detection: DetectionSettings,
    pub gallery: GallerySettings,
    pub limits: LimitSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Longest a request may take; a caller's shorter grpc-timeout wins.
    pub request_timeout_ms: u64,
    /// Requests handled at once over all connections; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Requests handled at once on one connection.
    pub max_in_flight_per_connection: usize,
    /// HTTP/2 streams one connection may open at once (more wait in the client).
    pub max_concurrent_streams: u32,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Longest graceful shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// PEM certificate chain and private key: serve gRPC over TLS (rustls).
    pub tls_cert: String,
    pub tls_key: String,
    /// PEM CA certificates: require and verify client certificates (mutual TLS).
    pub tls_client_ca: String,
    /// Serve plaintext on a non-loopback address anyway (logged as a warning).
    pub allow_plaintext_remote: bool,
    /// Added to the nice value (Linux) of the threads that serve gRPC, decode images
    /// and detect faces, 0 to 19; the model's threads keep the process's own. Above 0,
    /// inference gets the cores first when they are short, so that a flood of calls
    /// to refuse (a retry storm) leaves the model its share, at some cost to
    /// throughput at capacity (docs/benchmarks.md, "Overload"). 0: every thread alike.
    pub io_threads_nice: i32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Prometheus endpoint (`/metrics`) address; empty disables it.
    pub listen: String,
    /// Seconds between the log lines that summarise each gallery's Identify match
    /// rate and top-1 scores (drift); 0 disables them.
    pub match_log_interval_s: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// The ONNX face embedder.
    pub path: PathBuf,
    /// ONNX Runtime shared library; empty means the ORT_DYLIB_PATH variable.
    pub onnxruntime_library: String,
    /// ONNX Runtime's OpenVINO build, for the "openvino" provider (and "auto"); empty
    /// means where scripts/install-ort-openvino.sh puts it.
    pub openvino_library: String,
    /// "cpu" or "cuda" (needs a build with the `cuda` feature; fails if unusable).
    pub execution_provider: String,
    pub cuda_device_id: i32,
    /// Model instances (sessions) running batches concurrently.
    pub instances: usize,
    /// ONNX Runtime intra-op threads per instance; 0 = cores / instances.
    pub intra_op_threads: usize,
    /// Whether idle intra-op threads spin-wait for work: faster inference (about
    /// 10-30% on 2 cores), at the cost of CPU that decoding could use.
    pub intra_op_spinning: bool,
    /// Test-time flip: embed each face and its mirror image and use the normalised
    /// sum. More accurate, at twice the inference per face. Part of the model tag, so
    /// a gallery never mixes templates made with and without it.
    pub flip_test: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingSettings {
    /// Most faces in one inference.
    pub max_batch_size: usize,
    /// Longest a formed batch waits for faces still being decoded (0 = never wait).
    pub max_queue_delay_ms: u64,
    /// Faces waiting for inference; beyond this requests fail with RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    /// Longest a face may wait for inference, in ms (0 = no time bound). A call whose
    /// expected wait (the work queued ahead of it, at the measured cost per face)
    /// exceeds this is refused at once with RESOURCE_EXHAUSTED, or with
    /// DEADLINE_EXCEEDED when it exceeds what is left of the call's own deadline.
    pub max_queue_wait_ms: u64,
    /// Threads decoding images; 0 = number of cores.
    pub preprocess_threads: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionSettings {
    /// The fp32 YuNet face detector, prepared by scripts/install-deps.sh.
    pub model_path: PathBuf,
    /// Detector candidates scoring below this are not reported at all.
    pub score_threshold: f32,
    /// Overlapping detections above this IoU are merged.
    pub nms_threshold: f32,
    /// Photos whose longer side exceeds this are scaled down for detection only
    /// (alignment uses the full-resolution photo).
    pub max_side: u32,
    /// Quality gate: faces whose box is smaller (shorter side, pixels) are reported
    /// with rejection TOO_SMALL and get no embedding.
    pub min_face_size: u32,
    /// Quality gate: faces scoring below this are reported with rejection
    /// LOW_DETECTOR_SCORE and get no embedding.
    pub min_score: f32,
    /// Faces kept per photo, highest detector score first.
    pub max_faces_per_image: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GallerySettings {
    /// Where gallery data lives.
    pub data_dir: PathBuf,
    /// The default gallery's index, and CreateGallery's when a request names none:
    /// "flat", "hnsw", or a FAISS factory string starting with IDMap2.
    pub index: String,
    /// Cosine similarity at or above which a candidate is a match.
    pub match_threshold: f32,
    /// HNSW parameters for galleries whose request leaves them unset.
    pub hnsw: HnswSettings,
    /// IVF parameters for galleries whose request leaves them unset.
    pub ivf: IvfSettings,
    /// Where the gallery record lives: "sqlite" (in data_dir; one server) or
    /// "postgres" (shared by replicas; docs/replicas.md).
    pub backend: GalleryBackend,
    pub postgres: PostgresSettings,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum GalleryBackend {
    #[default]
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    /// libpq URL or key=value string, e.g. "postgresql://vargid@db:5432/vargid".
    pub url: String,
    /// Connections this replica keeps to the database.
    pub max_connections: usize,
    /// Changes the shared log keeps: a replica further behind rebuilds from the tables.
    pub log_keep: i64,
    /// CA certificates (PEM) to verify the database's TLS certificate against; empty
    /// for plaintext. With it, add `sslmode=require` to the URL.
    pub ca_file: PathBuf,
}

impl PostgresSettings {
    /// TLS to the database: verified against `ca_file` when one is set.
    pub fn tls(&self) -> vargid_store::postgres::PgTls {
        if self.ca_file.as_os_str().is_empty() {
            vargid_store::postgres::PgTls::Disabled
        } else {
            vargid_store::postgres::PgTls::Verified {
                ca_file: self.ca_file.clone(),
            }
        }
    }
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 8,
            log_keep: vargid_store::postgres::DEFAULT_LOG_KEEP,
            ca_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IvfSettings {
    /// Cells, when the index is "ivf" or "ivfpq" (a factory string names its own).
    pub nlist: u32,
    pub nprobe: u32,
    /// Candidates re-ranked on full templates per search, for "ivfpq".
    pub rerank: u32,
}

impl Default for IvfSettings {
    fn default() -> Self {
        let d = IvfParameters::default();
        Self {
            nlist: d.nlist,
            nprobe: d.nprobe,
            rerank: DEFAULT_RERANK,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HnswSettings {
    /// Neighbours per node, when the index is "hnsw" (a factory string names its own).
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
}

impl Default for HnswSettings {
    fn default() -> Self {
        let d = HnswParameters::default();
        Self {
            m: d.m,
            ef_construction: d.ef_construction,
            ef_search: d.ef_search,
        }
    }
}

impl GallerySettings {
    /// The defaults CreateGallery fills unset HNSW and IVF fields with.
    pub fn index_defaults(&self) -> IndexDefaults {
        IndexDefaults {
            hnsw: HnswParameters {
                m: self.hnsw.m,
                ef_construction: self.hnsw.ef_construction,
                ef_search: self.hnsw.ef_search,
            },
            ivf: IvfParameters {
                nlist: self.ivf.nlist,
                nprobe: self.ivf.nprobe,
                rerank: Some(self.ivf.rerank),
            },
        }
    }

    /// The shared database's settings when the backend is PostgreSQL.
    pub fn shared_record(&self) -> Option<&PostgresSettings> {
        (self.backend == GalleryBackend::Postgres).then_some(&self.postgres)
    }

    /// The index of galleries created without one.
    pub fn default_index(&self) -> Result<IndexSpec, IndexError> {
        IndexSpec::resolve(&self.index, IndexRequest::default(), self.index_defaults())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest encoded image, in bytes.
    pub max_image_bytes: usize,
    /// Largest image, in pixels, checked on the header before decoding.
    pub max_image_pixels: u64,
    /// Most images in one Enroll or Embed request.
    pub max_images_per_request: usize,
    /// Largest top_k of Identify.
    pub max_top_k: usize,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// TOML file of API keys (id, sha256 of the key, role, galleries); re-read when
    /// it changes. Empty: no keys, open access, allowed only on a loopback address.
    pub keys_file: String,
    /// Serve without keys on a non-loopback address anyway (logged as a warning).
    pub allow_unauthenticated_remote: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// tracing filter directives, e.g. "info" or "vargid=debug,info"; RUST_LOG wins.
    pub filter: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            request_timeout_ms: 30_000,
            max_in_flight: 1024,
            max_in_flight_per_connection: 512,
            max_concurrent_streams: 512,
            max_message_bytes: 32 * 1024 * 1024,
            shutdown_grace_ms: 10_000,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            allow_plaintext_remote: false,
            io_threads_nice: 0,
        }
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            match_log_interval_s: 300,
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("models/vargfacenet.onnx"),
            onnxruntime_library: String::new(),
            openvino_library: String::new(),
            execution_provider: "auto".into(),
            cuda_device_id: 0,
            instances: 1,
            intra_op_threads: 0,
            intra_op_spinning: true,
            flip_test: false,
        }
    }
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay_ms: 5,
            queue_capacity: 256,
            max_queue_wait_ms: 1000,
            preprocess_threads: 0,
        }
    }
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            model_path: PathBuf::from(".deps/models/yunet_2023mar_fp32.onnx"),
            score_threshold: 0.5,
            nms_threshold: 0.3,
            max_side: 640,
            min_face_size: 32,
            min_score: 0.7,
            max_faces_per_image: 32,
        }
    }
}

impl Default for GallerySettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            index: "IDMap2,Flat".into(),
            match_threshold: 0.36,
            hnsw: HnswSettings::default(),
            ivf: IvfSettings::default(),
            backend: GalleryBackend::Sqlite,
            postgres: PostgresSettings::default(),
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_image_bytes: 16 * 1024 * 1024,
            max_image_pixels: 40_000_000,
            max_images_per_request: 32,
            max_top_k: 100,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info,ort=warn".into(),
            format: "text".into(),
        }
    }
}

/// Environment variable naming the configuration file (the `--config` flag wins).
pub const CONFIG_FILE_VAR: &str = "VARGID_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, overridden by `file` (if any), overridden by `VARGID_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        // Settings are VARGID_<SECTION>__<KEY>; other VARGID_ variables (VARGID_CONFIG,
        // the tools' VARGID_LFW_DIR, ...) are not settings and must not be refused.
        let vars: config::Map<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("VARGID_") && k.contains("__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("VARGID")
                .source(Some(vars))
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: &str| Err(SettingsError::Invalid(m.to_string()));
        if self.batching.max_batch_size == 0 {
            return bad("batching.max_batch_size must be at least 1");
        }
        if self.batching.queue_capacity == 0 {
            return bad("batching.queue_capacity must be at least 1");
        }
        if self.batching.queue_capacity < self.limits.max_images_per_request {
            return bad("batching.queue_capacity must be at least limits.max_images_per_request");
        }
        if self.model.instances == 0 {
            return bad("model.instances must be at least 1");
        }
        if !matches!(
            self.model.execution_provider.as_str(),
            "auto" | "cpu" | "cuda" | "openvino"
        ) {
            return bad(
                "model.execution_provider must be \"auto\", \"cpu\", \"cuda\" or \"openvino\"",
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad("log.format must be \"text\" or \"json\"");
        }
        let d = &self.detection;
        if !(0.0..=1.0).contains(&d.score_threshold) || !(0.0..=1.0).contains(&d.min_score) {
            return bad("detection.score_threshold and detection.min_score must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&d.nms_threshold) {
            return bad("detection.nms_threshold must be in [0, 1]");
        }
        if d.max_side < 32 || d.max_faces_per_image == 0 {
            return bad(
                "detection.max_side must be at least 32 and max_faces_per_image at least 1",
            );
        }
        let s = &self.server;
        if !(0..=19).contains(&s.io_threads_nice) {
            return bad("server.io_threads_nice must be 0 to 19");
        }
        if s.tls_cert.is_empty() != s.tls_key.is_empty() {
            return bad("server.tls_cert and server.tls_key go together");
        }
        if !s.tls_client_ca.is_empty() && s.tls_cert.is_empty() {
            return bad("server.tls_client_ca (mutual TLS) needs server.tls_cert and tls_key");
        }
        if s.tls_cert.is_empty() && !s.listen.ip().is_loopback() && !s.allow_plaintext_remote {
            return bad(
                "plaintext gRPC on a non-loopback address: set server.tls_cert and tls_key, or \
                 server.allow_plaintext_remote = true behind a TLS-terminating proxy",
            );
        }
        if self.auth.keys_file.is_empty()
            && !self.server.listen.ip().is_loopback()
            && !self.auth.allow_unauthenticated_remote
        {
            return bad(
                "no API keys (auth.keys_file) on a non-loopback address: configure keys, or set \
                 auth.allow_unauthenticated_remote = true to serve everyone",
            );
        }
        let defaults = self.gallery.index_defaults();
        if let Err(e) = defaults
            .hnsw
            .check()
            .and_then(|()| defaults.ivf.check())
            .and_then(|()| self.gallery.default_index().map(|_| ()))
        {
            return bad(&format!("gallery.index / gallery.hnsw / gallery.ivf: {e}"));
        }
        if !(-1.0..=1.0).contains(&self.gallery.match_threshold) {
            return bad("gallery.match_threshold must be a cosine similarity in [-1, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/vargid.example.toml");
        let from_file = Settings::load(Some(&path)).unwrap();
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn only_section_variables_are_settings() {
        // The variable is unique to this test; no other test reads it.
        std::env::set_var("VARGID_UNRELATED_DIR", "/somewhere");
        assert_eq!(Settings::load(None).unwrap(), Settings::default());
        std::env::remove_var("VARGID_UNRELATED_DIR");
    }

    #[test]
    fn rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("vargid-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[server]\nlisten_address = \"x\"\n").unwrap();
        assert!(Settings::load(Some(&path)).is_err());
    }
}
