//! The real `vargid` binary, started by a benchmark on loopback ports, and what the
//! benchmarks read from it: its addresses and its cumulative batching counters.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use vargid_proto::v1 as pb;

/// A running `vargid` (the binary beside this one), killed when dropped.
pub struct Service {
    pub addr: String,
    pub metrics_addr: String,
    _child: tokio::process::Child,
}

impl Service {
    /// Starts it on the embedded defaults, overridden by `env` (`VARGID_*` settings).
    pub async fn start(env: &[(&str, String)]) -> anyhow::Result<Self> {
        // A fresh data directory: galleries left by a run on another model would be
        // refused (their model tag differs), and old templates would skew searches.
        let data_dir =
            std::env::temp_dir().join(format!("vargid-bench-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        Self::start_in(&data_dir, env).await
    }

    /// Starts it on `data_dir` as it is (a restart keeps the galleries).
    pub async fn start_in(
        data_dir: &std::path::Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let binary = exe.parent().context("bin dir")?.join("vargid");
        let mut command = tokio::process::Command::new(&binary);
        command
            .env("VARGID_SERVER__LISTEN", "127.0.0.1:0")
            .env("VARGID_METRICS__LISTEN", "127.0.0.1:0")
            .env("VARGID_GALLERY__DATA_DIR", data_dir)
            .env("VARGID_LOG__FILTER", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let (addr, metrics_addr) = loop {
            let line = lines
                .next_line()
                .await?
                .context("vargid exited before listening")?;
            if let (Some(grpc), Some(metrics)) =
                (log_field(&line, "grpc"), log_field(&line, "metrics"))
            {
                break (grpc, metrics);
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            addr,
            metrics_addr,
            _child: child,
        })
    }

    /// The server's resident memory, from /proc (Linux).
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        let pid = self._child.id().context("vargid exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("VmRSS in /proc/PID/status")?
            .parse()?;
        Ok(kib * 1024)
    }

    /// A clean shutdown (SIGTERM, as Kubernetes sends): the server writes its index
    /// snapshots before it exits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self._child.id().context("vargid exited")?;
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        let exit = self._child.wait().await?;
        anyhow::ensure!(exit.success(), "vargid exited with {exit}");
        Ok(())
    }

    /// `connections` HTTP/2 connections to it.
    pub async fn channels(
        &self,
        connections: usize,
    ) -> anyhow::Result<Vec<tonic::transport::Channel>> {
        let mut out = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            out.push(connect(&self.addr).await?);
        }
        Ok(out)
    }
}

/// One HTTP/2 connection to a gRPC server at `addr` (host:port, plaintext).
pub async fn connect(addr: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(
        tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?,
    )
}

/// An `Embed` request of one pre-aligned JPEG face.
pub fn aligned_request(jpeg: &[u8]) -> pb::EmbedRequest {
    pb::EmbedRequest {
        images: vec![pb::Image {
            source: Some(pb::image::Source::Encoded(jpeg.to_vec())),
            location: pb::FaceLocation::Aligned as i32,
            landmarks: None,
        }],
    }
}

/// `key=value` from a tracing text log line.
fn log_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_matches('"').to_string())
}

/// The server's /metrics text (Prometheus exposition format).
pub async fn metrics_text(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// Cumulative counters from the server's /metrics.
pub struct ServerStats {
    pub batches: f64,
    pub batch_faces: f64,
    pub inference_s: f64,
    pub refused: f64,
}

impl ServerStats {
    pub async fn scrape(addr: &str) -> anyhow::Result<Self> {
        let body = metrics_text(addr).await?;
        let value = |series: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
                .unwrap_or(0.0)
        };
        let refused = body
            .lines()
            .filter(|l| l.starts_with("vargid_queue_rejected_total"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum();
        Ok(Self {
            batches: value("vargid_batch_size_count"),
            batch_faces: value("vargid_batch_size_sum"),
            inference_s: value("vargid_inference_duration_seconds_sum"),
            refused,
        })
    }

    /// Mean faces per batch and ms per batch between two scrapes.
    pub fn batches_since(&self, before: &Self) -> (f64, f64) {
        let n = self.batches - before.batches;
        (
            (self.batch_faces - before.batch_faces) / n,
            1e3 * (self.inference_s - before.inference_s) / n,
        )
    }
}
