//! A gRPC load generator as ghz is one: N callers over a set of HTTP/2 connections,
//! each sending its next call (`Embed` or `Identify`) as soon as the last one is answered, optionally
//! paced by a shared rate limit (ghz `--rps`), so that the offered load is fixed
//! however fast the server answers or refuses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

/// What a load level measured, counting only calls that ended inside the window.
pub struct LoadResult {
    /// Latencies of successful calls, in seconds, sorted.
    pub ok_latencies: Vec<f64>,
    /// Failed calls by gRPC code.
    pub errors: BTreeMap<String, usize>,
    pub seconds: f64,
}

impl LoadResult {
    pub fn goodput(&self) -> f64 {
        self.ok_latencies.len() as f64 / self.seconds
    }

    /// The `p` quantile (0..1) of successful calls, in ms.
    pub fn ms(&self, p: f64) -> f64 {
        quantile(&self.ok_latencies, p) * 1e3
    }

    pub fn max_ms(&self) -> f64 {
        self.ok_latencies.last().copied().unwrap_or(f64::NAN) * 1e3
    }

    /// Several runs of one level as one: latencies, errors and seconds added up.
    pub fn pooled(runs: &[LoadResult]) -> LoadResult {
        let mut out = LoadResult {
            ok_latencies: runs
                .iter()
                .flat_map(|r| r.ok_latencies.iter().copied())
                .collect(),
            errors: BTreeMap::new(),
            seconds: runs.iter().map(|r| r.seconds).sum(),
        };
        for (code, n) in runs.iter().flat_map(|r| &r.errors) {
            *out.errors.entry(code.clone()).or_default() += n;
        }
        out.ok_latencies.sort_by(f64::total_cmp);
        out
    }

    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        self.errors
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `p` quantile (0..1) of sorted values (nearest rank); NaN for none.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// What each caller sends.
#[derive(Clone)]
pub enum Call {
    Embed(pb::EmbedRequest),
    Identify(pb::IdentifyRequest),
}

impl Call {
    async fn send(&self, client: &mut FaceServiceClient<Channel>) -> Result<(), tonic::Status> {
        match self {
            Call::Embed(r) => client.embed(r.clone()).await.map(drop),
            Call::Identify(r) => client.identify(r.clone()).await.map(drop),
        }
    }
}

/// Runs `concurrency` callers spread over `channels` for `warmup + seconds`, sending
/// `request` each time, at most `rate` calls a second in all when given; counts the
/// calls that end after the warm-up and within it.
pub async fn drive(
    channels: &[Channel],
    request: impl Into<Call>,
    concurrency: usize,
    rate: Option<f64>,
    warmup: Duration,
    seconds: f64,
) -> anyhow::Result<LoadResult> {
    let request: Call = request.into();
    let measure = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let pace = rate.map(|r| {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / r.max(1e-3)));
        // Behind schedule (all callers busy), the limiter does not burst to catch up.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        std::sync::Arc::new(tokio::sync::Mutex::new(ticks))
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let mut client = FaceServiceClient::new(channels[i % channels.len()].clone());
        let request = request.clone();
        let pace = pace.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                if let Some(pace) = &pace {
                    pace.lock().await.tick().await;
                }
                let sent = start.elapsed();
                if sent >= warmup + measure {
                    break;
                }
                let t = Instant::now();
                let result = request.send(&mut client).await;
                let took = t.elapsed();
                let ended = start.elapsed();
                if sent >= warmup && ended <= warmup + measure {
                    match result {
                        Ok(_) => latencies.push(took.as_secs_f64()),
                        Err(status) => {
                            *errors.entry(format!("{:?}", status.code())).or_default() += 1
                        }
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut out = LoadResult {
        ok_latencies: Vec::new(),
        errors: BTreeMap::new(),
        seconds,
    };
    while let Some(joined) = tasks.join_next().await {
        let (latencies, errors) = joined?;
        out.ok_latencies.extend(latencies);
        for (code, n) in errors {
            *out.errors.entry(code).or_default() += n;
        }
    }
    out.ok_latencies.sort_by(f64::total_cmp);
    Ok(out)
}

impl From<pb::EmbedRequest> for Call {
    fn from(r: pb::EmbedRequest) -> Self {
        Call::Embed(r)
    }
}

impl From<pb::IdentifyRequest> for Call {
    fn from(r: pb::IdentifyRequest) -> Self {
        Call::Identify(r)
    }
}
