//! `vargid-bench replicas --postgres-url URL`: replicas sharing one PostgreSQL gallery
//! record (docs/replicas.md) on this machine.
//!
//! 1. Identify throughput (aligned faces, callers spread round-robin over the
//!    replicas' connections) with 1, 2 and 3 replicas. They share this machine's
//!    cores, so this measures what replication costs, not what separate machines gain.
//! 2. Replication lag under enrollment load: callers enroll on the first replica, and
//!    for each acknowledged enrollment the time until the second replica's metrics
//!    report its sequence number applied (`vargid_replication_applied_sequence`,
//!    scraped every 2 ms, so figures carry up to that much extra).
//!
//! The database is the caller's (scripts/bench-replicas.sh starts a throwaway one).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

use crate::batching::face_jpeg;
use crate::load::{drive, quantile};
use crate::service::{connect, metrics_text, Service};

/// Replicas sharing a PostgreSQL gallery record.
#[derive(clap::Args)]
pub struct Args {
    /// The shared database (scripts/bench-replicas.sh starts one).
    #[arg(long, required = true)]
    postgres_url: String,
    /// Replica counts, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    replicas: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Identify callers at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Enroll callers at once (the lag measurement).
    #[arg(long, default_value_t = 4)]
    enroll_concurrency: usize,
    /// A face photo (JPEG).
    #[arg(long, default_value = crate::batching::DEFAULT_FACE)]
    face: PathBuf,
}

async fn start_replicas(args: &Args, n: usize) -> anyhow::Result<Vec<Service>> {
    let env = [
        ("VARGID_GALLERY__BACKEND", "postgres".to_string()),
        ("VARGID_GALLERY__POSTGRES__URL", args.postgres_url.clone()),
    ];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let dir =
            std::env::temp_dir().join(format!("vargid-bench-replica-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        out.push(Service::start_in(&dir, &env).await?);
    }
    Ok(out)
}

/// A series' value from a server's /metrics.
async fn scrape(addr: &str, series: &str) -> anyhow::Result<f64> {
    Ok(metrics_text(addr)
        .await?
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let jpeg = face_jpeg(&args.face)?;
    let image = pb::Image {
        source: Some(pb::image::Source::Encoded(jpeg)),
        location: pb::FaceLocation::Aligned as i32,
        landmarks: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "Identify (one aligned face, top 5, gallery of the enrollments so far), {} callers \
             round-robin over the replicas, {} s after 2 s of warm-up:\n",
            args.concurrency, args.seconds
        );
        println!(
            "| replicas | faces/s | p50 (ms) | p99 (ms) | errors |\n|---:|---:|---:|---:|---|"
        );
        for &n in &args.replicas {
            let replicas = start_replicas(&args, n).await?;
            let mut channels = Vec::new();
            for r in &replicas {
                channels.extend(r.channels(2).await?);
            }
            // A small gallery, so Identify searches something.
            let mut first = FaceServiceClient::new(channels[0].clone());
            let mut last = 0;
            for i in 0..20 {
                last = first
                    .enroll(pb::EnrollRequest {
                        identity_id: format!("warm-{n}-{i}"),
                        images: vec![image.clone()],
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .sequence;
            }
            let identify = pb::IdentifyRequest {
                image: Some(image.clone()),
                top_k: 5,
                min_sequence: last,
                ..Default::default()
            };
            let result = drive(
                &channels,
                identify,
                args.concurrency,
                None,
                Duration::from_secs(2),
                args.seconds,
            )
            .await?;
            println!(
                "| {n} | {:.1} | {:.1} | {:.1} | {} |",
                result.goodput(),
                result.ms(0.5),
                result.ms(0.99),
                result.errors_text()
            );
            drop(replicas);
        }

        // Replication lag under enrollment load: two replicas.
        let replicas = start_replicas(&args, 2).await?;
        let watched = replicas[1].metrics_addr.clone();
        let writer = connect(&replicas[0].addr).await?;
        let started = Instant::now();
        let window = Duration::from_secs_f64(args.seconds);
        let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..args.enroll_concurrency {
            let mut client = FaceServiceClient::new(writer.clone());
            let (image, acked_tx) = (image.clone(), acked_tx.clone());
            writers.spawn(async move {
                let mut n = 0;
                while started.elapsed() < window {
                    let reply = client
                        .enroll(pb::EnrollRequest {
                            identity_id: format!("lag-{w}-{n}"),
                            images: vec![image.clone()],
                            ..Default::default()
                        })
                        .await;
                    if let Ok(r) = reply {
                        let _ = acked_tx.send((r.into_inner().sequence, Instant::now()));
                    }
                    n += 1;
                }
            });
        }
        drop(acked_tx);
        let mut lags = Vec::<f64>::new();
        let mut pending: Vec<(u64, Instant)> = Vec::new();
        let mut open = true;
        while open || !pending.is_empty() {
            loop {
                match acked.try_recv() {
                    Ok(a) => pending.push(a),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let applied = scrape(&watched, "vargid_replication_applied_sequence").await? as u64;
            let now = Instant::now();
            pending.retain(|(seq, at)| {
                if *seq <= applied {
                    lags.push(now.duration_since(*at).as_secs_f64() * 1e3);
                    false
                } else {
                    true
                }
            });
            if started.elapsed() > window + Duration::from_secs(30) {
                bail!("the second replica did not catch up within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        while writers.join_next().await.is_some() {}
        lags.sort_by(f64::total_cmp);
        let rate = lags.len() as f64 / args.seconds;
        println!(
            "\nReplication lag, two replicas, {} callers enrolling on the first ({:.1} \
             enrollments/s, {} acknowledged): from the writer's answer until the second \
             replica reports the change applied: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            args.enroll_concurrency,
            rate,
            lags.len(),
            quantile(&lags, 0.5),
            quantile(&lags, 0.99),
            lags.last().copied().unwrap_or(f64::NAN)
        );
        Ok(())
    })
}
