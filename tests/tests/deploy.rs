//! Deployment: the container build steps, the Kubernetes manifests, the compose file
//! and the Grafana dashboard, checked without a Docker engine or a cluster.
//!
//! - `scripts/validate-deploy.sh` (kustomize + kubernetes-validate, strict schemas;
//!   compose-go) accepts the real files and rejects deliberately broken fixtures.
//! - The Dockerfile runs only scripts that these tests run; `stage-image.sh` stages
//!   both image variants, the staged server starts from the staged tree and answers
//!   the Dockerfile's own HEALTHCHECK command.
//! - The dashboard parses and queries only metrics the server exports.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::tempfile_dir::TempDir;
use common::{jpeg_image, lfw_crop, workspace_root};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    eprintln!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn manifests_and_compose_file_validate() {
    let out = run("scripts/validate-deploy.sh", &[]);
    let log = text(&out);
    assert!(out.status.success(), "validation failed:\n{log}");
    for line in [
        "ok   kubernetes deploy/kubernetes/overlays/cpu",
        "ok   kubernetes deploy/kubernetes/overlays/gpu",
        "ok   kubernetes deploy/kubernetes/overlays/replicas",
        "ok   compose docker-compose.yml (all profiles)",
        "ok   compose docker-compose.yml (cpu)",
        "ok   compose docker-compose.yml (gpu)",
        "ok   compose docker-compose.yml (replicas)",
        "ok   dockerfile Dockerfile (VARIANT=cpu)",
        "ok   dockerfile Dockerfile (VARIANT=cuda)",
        "ok   yaml ",
    ] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    // The images the Dockerfile uses, FROM and COPY --from alike (a misspelled stage
    // name in COPY --from would read as an image).
    let images = "images [docker.io/library/debian:bookworm-slim docker.io/library/golang:1.26-bookworm docker.io/library/rust:1.95-bookworm]";
    assert_eq!(log.matches(images).count(), 2, "{log}");
    // The image configuration BuildKit derives: non-root, the volume, the health
    // check through gRPC health, CUDA selected in the CUDA variant only.
    assert_eq!(log.matches("user \"10001:10001\", workdir \"/opt/vargid\", volumes [/data], ports [50051/tcp 9464/tcp]").count(), 2, "{log}");
    assert_eq!(log.matches("healthcheck [CMD /usr/local/bin/grpc-health-probe -addr=127.0.0.1:50051 -service=vargid.v1.FaceService").count(), 2, "{log}");
    assert_eq!(
        log.matches("VARGID_MODEL__EXECUTION_PROVIDER=cuda").count(),
        1,
        "{log}"
    );
}

#[test]
fn validation_rejects_broken_manifests_compose_files_and_dockerfiles() {
    let out = run(
        "scripts/validate-deploy.sh",
        &["--k8s", "deploy/testdata/invalid/kubernetes.yaml"],
    );
    let log = text(&out);
    assert!(!out.status.success(), "a broken manifest passed:\n{log}");
    for needle in [
        "'readinessProbes' was unexpected",
        "'50051' is not of type 'integer'",
        "Couldn't find schema for kind Deploymnet",
        "validate-deploy: INVALID",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from:\n{log}");
    }

    let out = run(
        "scripts/validate-deploy.sh",
        &["--dockerfile", "deploy/testdata/invalid/Dockerfile"],
    );
    let log = text(&out);
    assert!(!out.status.success(), "a broken Dockerfile passed:\n{log}");
    assert!(log.contains("UndefinedVar"), "{log}");
    assert!(log.contains("LegacyKeyValueFormat"), "{log}");

    let out = run(
        "scripts/validate-deploy.sh",
        &["--compose", "deploy/testdata/invalid/docker-compose.yml"],
    );
    let log = text(&out);
    assert!(
        !out.status.success(),
        "a broken compose file passed:\n{log}"
    );
    assert!(log.contains("services.vargid.port"), "{log}");

    // A compose file whose bind mount source is missing: the loader accepts it (docker
    // compose would create an empty directory), composecheck does not. Relative paths
    // resolve from the file's directory: it sits beside the real one.
    let broken = read("docker-compose.yml").replace(
        "./deploy/prometheus/prometheus.yml",
        "./deploy/prometheus/missing.yml",
    );
    let beside = workspace_root().join(format!("docker-compose.test-{}.yml", std::process::id()));
    std::fs::write(&beside, broken).unwrap();
    let out = run(
        "scripts/validate-deploy.sh",
        &["--compose", beside.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&beside);
    let log = text(&out);
    assert!(
        !out.status.success(),
        "a missing bind source passed:\n{log}"
    );
    assert!(log.contains("missing.yml"), "{log}");
}

/// `kustomize build` of an overlay.
fn render(overlay: &str) -> String {
    assert!(run("scripts/install-go-tools.sh", &["kustomize"])
        .status
        .success());
    let out = run(
        ".deps/bin/kustomize",
        &["build", &format!("deploy/kubernetes/overlays/{overlay}")],
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kubernetes_overlays_carry_probes_volume_and_gpu() {
    for overlay in ["cpu", "gpu"] {
        let yaml = render(overlay);
        for needle in [
            "kind: PersistentVolumeClaim",
            "claimName: vargid-data",
            "mountPath: /data",
            "startupProbe:",
            "readinessProbe:",
            "livenessProbe:",
            "service: vargid.v1.FaceService",
            "port: 50051",
            "terminationGracePeriodSeconds:",
            "preStop:",
            "runAsNonRoot: true",
            "runAsUser: 10001",
            "requests:",
            "type: Recreate",
            "kind: Service",
        ] {
            assert!(
                yaml.contains(needle),
                "{overlay}: {needle:?} missing:\n{yaml}"
            );
        }
        // The three probes use gRPC health, not TCP or exec.
        assert_eq!(yaml.matches("grpc:\n").count(), 3, "{overlay}:\n{yaml}");
    }
    let cpu = render("cpu");
    assert!(cpu.contains("image: vargid:cpu"));
    assert!(!cpu.contains("nvidia.com/gpu"));
    let gpu = render("gpu");
    assert!(gpu.contains("image: vargid:cuda"));
    assert!(gpu.contains("nvidia.com/gpu: 1"));
    assert!(gpu.contains("name: VARGID_MODEL__EXECUTION_PROVIDER\n          value: cuda"));
}

/// The replicas overlay: several pods on the shared PostgreSQL record, no gallery
/// volume, scaled on CPU, a disruption budget, and the trial PostgreSQL.
#[test]
fn kubernetes_replicas_overlay_shares_postgres() {
    let yaml = render("replicas");
    for needle in [
        "kind: Deployment",
        "replicas: 2",
        "type: RollingUpdate",
        "name: VARGID_GALLERY__BACKEND\n          value: postgres",
        "name: VARGID_GALLERY__POSTGRES__URL",
        "kind: HorizontalPodAutoscaler",
        "averageUtilization: 70",
        "kind: PodDisruptionBudget",
        "minAvailable: 1",
        "kind: StatefulSet",
        "image: postgres:15-bookworm",
        "service: vargid.v1.FaceService",
    ] {
        assert!(
            yaml.contains(needle),
            "replicas: {needle:?} missing:\n{yaml}"
        );
    }
    assert!(!yaml.contains("kind: PersistentVolumeClaim"), "{yaml}");
    assert!(!yaml.contains("claimName: vargid-data"), "{yaml}");
}

/// The compose file as loaded with `profile` (composecheck prints the resolved model).
fn compose_config(profile: &str) -> String {
    assert!(run("scripts/install-go-tools.sh", &["composecheck"])
        .status
        .success());
    let out = run(
        ".deps/bin/composecheck",
        &["-profile", profile, "docker-compose.yml"],
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The compose `replicas` profile: PostgreSQL, two replicas on it, Envoy in front.
#[test]
fn compose_replicas_profile_puts_envoy_before_two_replicas() {
    let yaml = compose_config("replicas");
    for needle in [
        "postgres:",
        "vargid-a:",
        "vargid-b:",
        "envoy:",
        "VARGID_GALLERY__BACKEND: postgres",
        "condition: service_healthy",
        "target: /etc/envoy/envoy.yaml",
    ] {
        assert!(yaml.contains(needle), "{needle:?} missing:\n{yaml}");
    }
    let envoy = read("deploy/envoy/envoy.yaml");
    for needle in [
        "address: vargid-a",
        "address: vargid-b",
        "http2_protocol_options",
        "grpc_health_check",
    ] {
        assert!(envoy.contains(needle), "{needle:?} missing from envoy.yaml");
    }
}

#[test]
fn compose_gpu_profile_reserves_a_gpu() {
    let yaml = compose_config("gpu");
    for needle in [
        "vargid-gpu:",
        "driver: nvidia",
        "- gpu",
        "VARIANT: cuda",
        "target: /data",
        "prometheus:",
        "grafana:",
    ] {
        assert!(yaml.contains(needle), "{needle:?} missing:\n{yaml}");
    }
    let yaml = compose_config("cpu");
    assert!(yaml.contains("VARIANT: cpu") && !yaml.contains("driver: nvidia"));
}

/// Metric names the server exports (`const NAME: &str = "vargid_..."` in metrics.rs),
/// and which of them are histograms.
fn exported_metrics() -> (BTreeSet<String>, BTreeSet<String>) {
    let source = read("crates/server/src/metrics.rs");
    let mut consts = std::collections::BTreeMap::new();
    for line in source.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("const ") {
            if let Some((name, value)) = rest.split_once(": &str = \"") {
                consts.insert(name.to_string(), value.trim_end_matches("\";").to_string());
            }
        }
    }
    let histograms = consts
        .iter()
        .filter(|(name, _)| source.contains(&format!("histogram!({name}")))
        .map(|(_, metric)| metric.clone())
        .collect();
    (consts.into_values().collect(), histograms)
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_only_exported_metrics_and_shows_them_all() {
    let (exported, histograms) = exported_metrics();
    assert!(exported.len() >= 10, "parsed {exported:?} from metrics.rs");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/vargid.json"))
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "vargid");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "{queries:?}");

    let mut used = BTreeSet::new();
    for query in &queries {
        let mut rest = query.as_str();
        while let Some(at) = rest.find("vargid_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| histograms.contains(*b))
                .map_or(name.clone(), str::to_string);
            assert!(
                exported.contains(&base),
                "the dashboard queries {name}, which crates/server/src/metrics.rs does not export ({query})"
            );
            if base != name {
                assert!(histograms.contains(&base), "{name}: {base} is no histogram");
            }
            used.insert(base);
        }
    }
    let unshown: Vec<_> = exported.difference(&used).collect();
    assert!(
        unshown.is_empty(),
        "metrics without a panel in deploy/grafana/dashboards/vargid.json: {unshown:?}"
    );
    // The panels: throughput, latency percentiles, queue depth, batch size,
    // gallery size.
    for needle in [
        "rate(vargid_requests_total",
        "histogram_quantile(0.99, sum by (le) (rate(vargid_request_duration_seconds_bucket",
        "vargid_queue_depth",
        "vargid_batch_size_sum",
        "vargid_gallery_faces",
    ] {
        assert!(queries.iter().any(|q| q.contains(needle)), "{needle}");
    }

    // Provisioning: the data source the dashboard names, Prometheus scraping vargid.
    assert!(
        read("deploy/grafana/provisioning/datasources/prometheus.yml").contains("uid: prometheus")
    );
    assert_eq!(dashboard["panels"][0]["datasource"]["uid"], "prometheus");
    assert!(read("deploy/prometheus/prometheus.yml").contains("targets: [\"vargid:9464\"]"));
}

/// The RUN instructions of the Dockerfile, continuation lines joined.
fn dockerfile_runs() -> Vec<String> {
    let mut runs = Vec::new();
    let mut current: Option<String> = None;
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if let Some(cur) = current.as_mut() {
            cur.push(' ');
            cur.push_str(trimmed.trim_end_matches('\\').trim());
        } else if let Some(rest) = trimmed.strip_prefix("RUN ") {
            current = Some(rest.trim_end_matches('\\').trim().to_string());
        }
        if current.is_some() && !trimmed.ends_with('\\') {
            runs.push(current.take().unwrap());
        }
    }
    runs
}

#[test]
fn dockerfile_runs_only_scripts_these_tests_run() {
    // What this file's tests run: install-go-tools.sh (validation, staging),
    // install-deps.sh and install-ort-cuda.sh (through stage-image.sh),
    // stage-image.sh, install-runtime-deps.sh (below).
    let tested = [
        "install-go-tools.sh",
        "install-deps.sh",
        "stage-image.sh",
        "install-runtime-deps.sh",
    ];
    let runs = dockerfile_runs();
    assert!(runs.len() >= 4, "{runs:?}");
    for run in &runs {
        let command: Vec<&str> = run
            .split_whitespace()
            .filter(|w| !w.starts_with("--mount="))
            .collect();
        let script = command[0].rsplit('/').next().unwrap();
        assert!(
            tested.contains(&script) && command.len() < 8 && !run.contains("&&"),
            "Dockerfile step is not one call of a tested script: RUN {run}"
        );
        assert!(workspace_root().join("scripts").join(script).is_file());
    }
    let out = run("scripts/install-runtime-deps.sh", &[]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A server started from a staged image tree, as the image would start it.
struct Staged {
    child: Child,
    grpc: String,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The container's configuration, with the paths that point into the image mapped
/// into `rootfs` and the addresses on loopback.
fn start_staged(rootfs: &Path, data: &Path, env: &[(&str, &str)]) -> Result<Staged, String> {
    let config = rootfs.join("etc/vargid/vargid.toml");
    let library = "/opt/onnxruntime/libonnxruntime.so";
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains(&format!("onnxruntime_library = \"{library}\"")));
    let mut cmd = Command::new(rootfs.join("usr/local/bin/vargid"));
    // The image's WORKDIR: relative model paths resolve there.
    cmd.current_dir(rootfs.join("opt/vargid"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VARGID_") || key == "ORT_DYLIB_PATH" {
            cmd.env_remove(key);
        }
    }
    cmd.env("VARGID_CONFIG", &config)
        .env(
            "VARGID_MODEL__ONNXRUNTIME_LIBRARY",
            rootfs.join(library.trim_start_matches('/')),
        )
        .env(
            "VARGID_MODEL__OPENVINO_LIBRARY",
            rootfs.join("opt/onnxruntime-openvino/libonnxruntime.so"),
        )
        .env("VARGID_GALLERY__DATA_DIR", data)
        .env("VARGID_SERVER__LISTEN", "127.0.0.1:0")
        .env("VARGID_METRICS__LISTEN", "127.0.0.1:0")
        .env("VARGID_LOG__FORMAT", "text")
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("starting the staged vargid");
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("[staged vargid] {line}");
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("vargid listening") => {
                let grpc = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("grpc="))
                    .expect("grpc= in the log line")
                    .to_string();
                return Ok(Staged { child, grpc });
            }
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                return Err(format!("{status}: {}", seen.join("\n")));
            }
        }
    }
}

/// The Dockerfile's HEALTHCHECK command, its address replaced by `addr`, run
/// against the staged tree.
fn health_check(rootfs: &Path, addr: &str) -> Output {
    let dockerfile = read("Dockerfile");
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("CMD ["))
        .expect("HEALTHCHECK ... CMD [...] in the Dockerfile");
    let argv: Vec<String> = serde_json::from_str(&format!("[{cmd}")).expect("exec-form CMD");
    assert_eq!(argv[0], "/usr/local/bin/grpc-health-probe");
    assert!(argv.contains(&"-addr=127.0.0.1:50051".to_string()));
    let program: PathBuf = rootfs.join(argv[0].trim_start_matches('/'));
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| a.replace("127.0.0.1:50051", addr))
        .collect();
    let output = Command::new(program).args(&args).output().unwrap();
    eprintln!("health check: {}", text(&output));
    output
}

fn stage(variant: &str, out: &Path) -> PathBuf {
    let out_str = out.to_str().unwrap();
    let result = run(
        "scripts/stage-image.sh",
        &[
            "--variant",
            variant,
            "--profile",
            "dev",
            "--no-build",
            "--out",
            out_str,
        ],
    );
    assert!(result.status.success(), "{}", text(&result));
    // The Dockerfile's assumptions about the tree.
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("WORKDIR /opt/vargid"));
    assert!(dockerfile.contains("VARGID_CONFIG=/etc/vargid/vargid.toml"));
    assert!(dockerfile.contains("COPY --from=builder /stage/rootfs/ /"));
    assert!(out.join("data").is_dir());
    out.join("rootfs")
}

async fn info(addr: &str) -> pb::ServiceInfo {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("a valid address")
        .connect()
        .await
        .expect("connecting to the staged vargid");
    let mut client = FaceServiceClient::new(channel);
    // A real face through the staged ONNX Runtime and model.
    client
        .embed(pb::EmbedRequest {
            images: vec![jpeg_image(&lfw_crop("Serena_Williams", 1))],
        })
        .await
        .expect("embed through the staged tree");
    client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .expect("service info")
        .into_inner()
}

#[tokio::test]
async fn staged_cpu_image_serves_and_passes_its_health_check() {
    let dir = TempDir::new("stage-cpu");
    let rootfs = stage("cpu", &dir.0);
    let server = start_staged(&rootfs, &dir.0.join("data"), &[]).expect("staged vargid starts");
    let check = health_check(&rootfs, &server.grpc);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("SERVING"));
    // "auto": the image's OpenVINO build on a CPU with AVX-512.
    let expected = if std::arch::is_x86_feature_detected!("avx512f") {
        "OpenVINO"
    } else {
        "CPU"
    };
    assert_eq!(info(&server.grpc).await.execution_provider, expected);
    let staged = read("config/vargid.container.toml");
    assert!(staged.contains("openvino_library = \"/opt/onnxruntime-openvino/libonnxruntime.so\""));
    assert!(rootfs
        .join("opt/onnxruntime-openvino/libonnxruntime_providers_openvino.so")
        .is_file());
}

/// The CUDA variant's tree (ONNX Runtime's CUDA build and the CUDA libraries,
/// install-ort-cuda.sh; about 1.8 GB downloaded once into .deps/). There is no GPU
/// here: the staged ONNX Runtime must serve on the CPU, and asking for CUDA, as the
/// image does, must stop the start with an error that names CUDA.
#[tokio::test]
async fn staged_cuda_image_loads_its_onnx_runtime_and_refuses_to_fall_back() {
    let dir = TempDir::new("stage-cuda");
    let rootfs = stage("cuda", &dir.0);
    assert!(rootfs
        .join("opt/onnxruntime/libonnxruntime_providers_cuda.so")
        .is_file());
    assert!(rootfs.join("opt/onnxruntime/libcudnn.so.9").is_file());
    assert!(read("Dockerfile").contains("VARGID_MODEL__EXECUTION_PROVIDER=cuda"));

    let refused = start_staged(
        &rootfs,
        &dir.0.join("data"),
        &[("VARGID_MODEL__EXECUTION_PROVIDER", "cuda")],
    );
    let log = refused.err().expect("CUDA without a GPU must not start");
    assert!(log.contains("CUDA"), "{log}");

    let server = start_staged(
        &rootfs,
        &dir.0.join("data"),
        &[("VARGID_MODEL__EXECUTION_PROVIDER", "cpu")],
    )
    .expect("the CUDA build of ONNX Runtime serves on the CPU");
    let check = health_check(&rootfs, &server.grpc);
    assert!(check.status.success(), "{}", text(&check));
    assert_eq!(info(&server.grpc).await.execution_provider, "CPU");
}
