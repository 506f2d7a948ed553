//! Starts the real `vargid` binary on loopback ports and connects gRPC clients to it.
#![allow(dead_code)] // each test file uses a different part of this harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use image::{imageops, ImageFormat, RgbImage};
use tonic::transport::Channel;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

pub mod postgres;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `vargid` binary next to this test executable (`make test` builds it first).
/// The embedding width of the committed model, from its reference embedding
/// (crates/model/tests/data, kept in step with models/vargfacenet.onnx by the
/// training tests).
pub fn model_embedding_size() -> usize {
    let path = workspace_root().join("crates/model/tests/data/reference_embedding.json");
    let text = std::fs::read_to_string(&path).expect("reference embedding");
    let json: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    json["embedding_raw"]
        .as_array()
        .expect("embedding_raw")
        .len()
}

pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("vargid");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build --bins`, or `make test`)",
        bin.display()
    );
    bin
}

/// The LFW images: `VARGID_LFW_DIR`, else `../shared/data/lfw` beside the repository.
pub fn lfw_dir() -> PathBuf {
    std::env::var_os("VARGID_LFW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data/lfw"))
}

/// DIR/<person>/<photo> as links to LFW: the first `several` people (by name) with two
/// or more photos, up to four photos each, and the first `single` people with one.
pub fn lfw_folder(dir: &Path, several: usize, single: usize) -> usize {
    let root = lfw_dir().join("images");
    let mut people: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("LFW images")
        .map(|e| e.expect("entry").path())
        .collect();
    people.sort();
    let (mut taken_several, mut taken_single, mut photos) = (0, 0, 0);
    for person in people {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&person)
            .expect("a person's folder")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let take = if files.len() >= 2 && taken_several < several {
            taken_several += 1;
            4
        } else if files.len() == 1 && taken_single < single {
            taken_single += 1;
            1
        } else {
            continue;
        };
        let folder = dir.join(person.file_name().expect("a name"));
        std::fs::create_dir_all(&folder).expect("creating a person's folder");
        for f in files.iter().take(take) {
            std::os::unix::fs::symlink(f, folder.join(f.file_name().expect("a name")))
                .expect("linking a photo");
            photos += 1;
        }
    }
    photos
}

/// Four aligned LFW crops, the first two of one person (Serena Williams): what the
/// tests that compare two runtimes on one gallery embed, enroll (the first) and find.
pub fn two_runtime_check_crops() -> Vec<pb::Image> {
    [
        ("Serena_Williams", 1),
        ("Serena_Williams", 3),
        ("Colin_Powell", 40),
        ("Tony_Blair", 18),
    ]
    .iter()
    .map(|(name, n)| raw_image(&lfw_crop(name, *n)))
    .collect()
}

/// The `vargid` command line with `args` against `server` (no API key), to completion.
pub fn run_vargid(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("VARGID_ADDRESS", &server.grpc)
        .env_remove("VARGID_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("running vargid")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running server, killed on drop.
pub struct Server {
    child: Child,
    pub grpc: String,
    pub metrics: Option<String>,
    /// The data directory when the harness made it (removed on drop).
    pub owned_data: Option<tempfile_dir::TempDir>,
    pub data_dir: PathBuf,
    logs: mpsc::Receiver<String>,
    /// Every log line received so far.
    history: Vec<String>,
}

pub mod tempfile_dir {
    /// A directory removed on drop (no extra crate for one struct).
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir =
                std::env::temp_dir().join(format!("vargid-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("creating a temporary directory");
            Self(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Server {
    /// Starts the binary with the embedded defaults, ports chosen by the OS, a fresh
    /// data directory, and `env` as extra `VARGID_...` settings.
    pub fn start(env: &[(&str, &str)]) -> Server {
        let data = tempfile_dir::TempDir::new("data");
        let mut server = Self::start_in(&data.0, env);
        server.owned_data = Some(data);
        server
    }

    /// Starts the binary on an existing data directory (kept after the server stops).
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.current_dir(workspace_root())
            .env("VARGID_SERVER__LISTEN", "127.0.0.1:0")
            .env("VARGID_METRICS__LISTEN", "127.0.0.1:0")
            .env("VARGID_GALLERY__DATA_DIR", data_dir)
            .env("VARGID_LOG__FILTER", "info,ort=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting vargid");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[vargid] {line}");
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut server = Server {
            child,
            grpc: String::new(),
            metrics: None,
            owned_data: None,
            data_dir: data_dir.to_path_buf(),
            logs,
            history: Vec::new(),
        };
        let line = server
            .wait_for_log("vargid listening", Duration::from_secs(120))
            .expect("vargid did not start listening");
        server.grpc = field(&line, "grpc").expect("grpc address in log");
        server.metrics = field(&line, "metrics").filter(|m| m != "off");
        server
    }

    /// The first log line containing `needle` (since start), waiting up to `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.history.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    self.history.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("vargid exited early: {status}");
                    }
                    return None;
                }
            }
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connecting to vargid")
    }

    pub async fn client(&self) -> FaceServiceClient<Channel> {
        FaceServiceClient::new(self.channel().await)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, as in a crash or power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("waiting for vargid")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every LFW photo path, sorted (a pool of distinct faces).
pub fn lfw_photos() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = lfw_dir().join("images");
    for person in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let person = person.expect("dir entry").path();
        for photo in std::fs::read_dir(&person).expect("person dir") {
            out.push(photo.expect("dir entry").path());
        }
    }
    out.sort();
    out
}

/// The centre crop of an LFW photo at `path` (see [`lfw_crop`]).
pub fn lfw_crop_at(path: &Path) -> RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_rgb8();
    centre_crop(&img)
}

fn centre_crop(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = w.min(h) * 2 / 5;
    let crop = imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side).to_image();
    imageops::resize(&crop, 112, 112, imageops::FilterType::Triangle)
}

/// `key=value` from a tracing text log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    Some(
        rest.split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

/// A 112x112 crop around the centre of an LFW photo (deep-funneled LFW keeps the
/// face roughly centred), as used by these tests until detection lands.
pub fn lfw_crop(name: &str, number: u32) -> RgbImage {
    let path = lfw_dir().join(format!("images/{name}/{name}_{number:04}.jpg"));
    lfw_crop_at(&path)
}

pub fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding");
    out.into_inner()
}

pub fn jpeg_image(img: &RgbImage) -> pb::Image {
    pb::Image {
        source: Some(pb::image::Source::Encoded(encode(img, ImageFormat::Jpeg))),
        ..Default::default()
    }
}

pub fn raw_image(img: &RgbImage) -> pb::Image {
    pb::Image {
        source: Some(pb::image::Source::Raw(pb::RawImage {
            width: img.width(),
            height: img.height(),
            rgb: img.as_raw().clone(),
        })),
        location: pb::FaceLocation::Aligned as i32,
        ..Default::default()
    }
}

/// Cosine similarity of two embeddings (of any norm).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// The embedding of the first face of each image, from one Embed call.
pub async fn first_face_embeddings(
    client: &mut FaceServiceClient<Channel>,
    images: Vec<pb::Image>,
) -> Vec<Vec<f32>> {
    client
        .embed(pb::EmbedRequest { images })
        .await
        .expect("embed")
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.faces[0].embedding.clone())
        .collect()
}

/// Every identity of `gallery` ("" for the default), through ListIdentities' pages.
pub async fn all_identities(
    client: &mut FaceServiceClient<Channel>,
    gallery: &str,
) -> Vec<pb::Identity> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_identities(pb::ListIdentitiesRequest {
                page_size: 1000,
                page_token: token,
                gallery: gallery.into(),
            })
            .await
            .expect("list")
            .into_inner();
        out.extend(page.identities);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The server's GetServiceInfo answer.
pub async fn service_info(client: &mut FaceServiceClient<Channel>) -> pb::ServiceInfo {
    client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("service info")
        .into_inner()
}

/// The model tag of the server's model (what ImportGallery and search by template take).
pub async fn served_model(client: &mut FaceServiceClient<Channel>) -> pb::ModelTag {
    let info = service_info(client).await;
    pb::ModelTag {
        name: info.model_name,
        version: info.model_version,
        embedding_size: info.embedding_size,
    }
}

/// Asserts a failed call's code and that its message names each of `words`.
pub fn expect_status<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
    words: &[&str],
) {
    let status = result.expect_err("request should fail");
    assert_eq!(status.code(), code, "{status:?}");
    for w in words {
        assert!(
            status.message().contains(w),
            "{:?} lacks {w:?}",
            status.message()
        );
    }
}

/// Asserts that `identity_id` is not in the default gallery (GetIdentity: NOT_FOUND).
pub async fn expect_absent(client: &mut FaceServiceClient<Channel>, identity_id: &str) {
    expect_status(
        client
            .get_identity(pb::GetIdentityRequest {
                identity_id: identity_id.into(),
                ..Default::default()
            })
            .await,
        tonic::Code::NotFound,
        &[&format!("{identity_id:?}")],
    );
}

/// Asserts that the server reports `vargid.v1.FaceService` as SERVING.
pub async fn expect_serving(server: &Server) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: "vargid.v1.FaceService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}
