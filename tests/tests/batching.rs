//! The batching engine seen from outside: overload behaviour and metrics.

mod common;

use std::collections::HashMap;

use common::{lfw_crop, raw_image, Server};
use tonic::Code;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

/// Far past capacity (512 concurrent callers, a queue of 64 faces, no time bound): the
/// excess is refused with RESOURCE_EXHAUSTED, admitted requests are served, nothing
/// else fails, and the server serves normally once the load stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_fast_and_the_server_recovers() {
    let server = Server::start(&[
        ("VARGID_BATCHING__QUEUE_CAPACITY", "64"),
        ("VARGID_BATCHING__MAX_QUEUE_WAIT_MS", "0"),
    ]);
    let image = raw_image(&lfw_crop("Ann_Veneman", 3));
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(server.channel().await);
    }
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..512 {
        let mut client = FaceServiceClient::new(channels[i % channels.len()].clone());
        let image = image.clone();
        calls.spawn(async move {
            client
                .embed(pb::EmbedRequest {
                    images: vec![image],
                })
                .await
                .map(|r| r.into_inner().images.len())
                .map_err(|s| (s.code(), s.message().to_string()))
        });
    }
    let mut codes: HashMap<Code, usize> = HashMap::new();
    while let Some(joined) = calls.join_next().await {
        match joined.expect("call task") {
            Ok(images) => {
                assert_eq!(images, 1);
                *codes.entry(Code::Ok).or_default() += 1;
            }
            Err((code, message)) => {
                assert_eq!(code, Code::ResourceExhausted, "{message}");
                assert!(message.contains("queue is full"), "{message}");
                *codes.entry(code).or_default() += 1;
            }
        }
    }
    let ok = codes.get(&Code::Ok).copied().unwrap_or(0);
    let refused = codes.get(&Code::ResourceExhausted).copied().unwrap_or(0);
    assert_eq!(ok + refused, 512);
    assert!(ok >= 64, "at least a queue's worth is served: {codes:?}");
    assert!(refused > 0, "the excess is refused: {codes:?}");

    // Recovered: sequential calls all succeed.
    let mut client = server.client().await;
    for _ in 0..5 {
        client
            .embed(pb::EmbedRequest {
                images: vec![image.clone()],
            })
            .await
            .expect("served after the load stopped");
    }
}

/// A bound on the wait, far below what a burst queues (1 ms; 128 callers at once, room
/// for all of them by count): calls over it are refused with RESOURCE_EXHAUSTED saying
/// so, the rest are served, the metrics count the refusals by reason, and an idle
/// server admits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_wait_bound_are_refused_at_once() {
    let server = Server::start(&[
        ("VARGID_BATCHING__QUEUE_CAPACITY", "512"),
        ("VARGID_BATCHING__MAX_QUEUE_WAIT_MS", "1"),
    ]);
    let image = raw_image(&lfw_crop("Ann_Veneman", 3));
    let mut client = server.client().await;
    let one = pb::EmbedRequest {
        images: vec![image.clone()],
    };
    // The first batch teaches admission what a face costs.
    client.embed(one.clone()).await.expect("idle call");
    let channel = server.channel().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..128 {
        let mut client = FaceServiceClient::new(channel.clone());
        let request = one.clone();
        calls.spawn(async move {
            client
                .embed(request)
                .await
                .map(drop)
                .map_err(|s| (s.code(), s.message().to_string()))
        });
    }
    let (mut ok, mut over_bound) = (0, 0);
    while let Some(joined) = calls.join_next().await {
        match joined.expect("call task") {
            Ok(()) => ok += 1,
            Err((code, message)) => {
                assert_eq!(code, Code::ResourceExhausted, "{message}");
                // Refused on admission, or (estimate exceeded) on leaving the queue.
                assert!(
                    message.contains("server overloaded") && message.contains("1 ms bound")
                        || message.contains("beyond the 1 ms bound"),
                    "{message}"
                );
                over_bound += 1;
            }
        }
    }
    assert!(ok >= 1, "the first caller of the burst is admitted");
    assert!(over_bound > 0, "calls over the bound are refused");
    assert_eq!(ok + over_bound, 128);

    let addr = server.metrics.as_deref().expect("metrics endpoint");
    let body = http_get(addr, "/metrics").await;
    assert!(
        body.contains("vargid_queue_rejected_total{reason=\"wait_bound\"}"),
        "refusals by reason:\n{body}"
    );
    for _ in 0..3 {
        client
            .embed(one.clone())
            .await
            .expect("an idle server admits");
    }
}

/// A call whose own deadline is shorter than the work queued ahead of it is refused at
/// once with DEADLINE_EXCEEDED, not run after its caller has given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_meet_its_deadline_is_refused_at_once() {
    let server = Server::start(&[("VARGID_BATCHING__MAX_QUEUE_WAIT_MS", "0")]);
    let image = raw_image(&lfw_crop("Serena_Williams", 1));
    let mut client = server.client().await;
    client
        .embed(pb::EmbedRequest {
            images: vec![image.clone()],
        })
        .await
        .expect("idle call");
    // Two full requests ahead: 64 faces of work, far more than 100 ms on any CPU.
    let mut ahead = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let mut client = server.client().await;
        let images = vec![image.clone(); 32];
        ahead.spawn(async move { client.embed(pb::EmbedRequest { images }).await.map(drop) });
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut request = tonic::Request::new(pb::EmbedRequest {
        images: vec![image.clone()],
    });
    request.set_timeout(std::time::Duration::from_millis(100));
    let refused = client.embed(request).await.expect_err("cannot meet 100 ms");
    assert_eq!(
        refused.code(),
        Code::DeadlineExceeded,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("shorter than the expected wait"),
        "{}",
        refused.message()
    );
    while let Some(joined) = ahead.join_next().await {
        joined.expect("task").expect("the calls ahead are served");
    }
}

/// After known requests the metrics endpoint shows matching batch and request counts.
#[tokio::test]
async fn metrics_count_batches_and_requests() {
    let server = Server::start(&[]);
    let mut client = server.client().await;
    let image = raw_image(&lfw_crop("Serena_Williams", 1));
    for _ in 0..5 {
        client
            .embed(pb::EmbedRequest {
                images: vec![image.clone()],
            })
            .await
            .expect("embed");
    }
    client
        .embed(pb::EmbedRequest {
            images: vec![image.clone(), image.clone(), image.clone()],
        })
        .await
        .expect("embed three");
    let bad = client
        .embed(pb::EmbedRequest { images: vec![] })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let addr = server.metrics.as_deref().expect("metrics endpoint");
    let body = http_get(addr, "/metrics").await;
    let value = |series: &str| metric(&body, series);
    assert_eq!(
        value("vargid_requests_total{method=\"Embed\",code=\"OK\"}"),
        6.0
    );
    assert_eq!(
        value("vargid_requests_total{method=\"Embed\",code=\"INVALID_ARGUMENT\"}"),
        1.0
    );
    assert_eq!(value("vargid_faces_embedded_total"), 8.0);
    assert_eq!(value("vargid_batch_size_sum"), 8.0);
    // Sequential callers: five batches of one, then one or more for the three faces.
    let batches = value("vargid_batch_size_count");
    assert!((6.0..=8.0).contains(&batches), "{batches} batches");
    assert!(value("vargid_batch_size_bucket{le=\"1\"}") >= 5.0);
    for family in [
        "vargid_queue_depth",
        "vargid_queue_wait_seconds_bucket",
        "vargid_inference_duration_seconds_bucket",
        "vargid_request_duration_seconds_bucket",
        "vargid_gallery_faces",
    ] {
        assert!(body.contains(family), "{family} missing");
    }
}

/// Identify's top-1 scores and match rate per gallery: in the metrics, and summarised
/// in a log line every `metrics.match_log_interval_s`.
#[tokio::test]
async fn identify_scores_reach_the_metrics_and_the_drift_log() {
    let mut server = Server::start(&[("VARGID_METRICS__MATCH_LOG_INTERVAL_S", "1")]);
    let mut client = server.client().await;
    client
        .enroll(pb::EnrollRequest {
            identity_id: "serena".into(),
            images: vec![raw_image(&lfw_crop("Serena_Williams", 1))],
            ..Default::default()
        })
        .await
        .expect("enroll");
    for (name, number) in [
        ("Serena_Williams", 3),
        ("Serena_Williams", 14),
        ("Colin_Powell", 40),
    ] {
        client
            .identify(pb::IdentifyRequest {
                image: Some(raw_image(&lfw_crop(name, number))),
                ..Default::default()
            })
            .await
            .expect("identify");
    }
    let addr = server.metrics.as_deref().expect("metrics endpoint");
    let body = http_get(addr, "/metrics").await;
    let value = |series: &str| metric(&body, series);
    assert_eq!(
        value("vargid_identify_top1_score_count{gallery=\"default\"}"),
        3.0
    );
    assert_eq!(
        value("vargid_identify_searches_total{gallery=\"default\",result=\"match\"}"),
        2.0
    );
    assert_eq!(
        value("vargid_identify_searches_total{gallery=\"default\",result=\"no_match\"}"),
        1.0
    );
    let line = server
        .wait_for_log("identify match rate", std::time::Duration::from_secs(10))
        .expect("the drift summary is logged");
    assert!(
        line.contains("gallery=default")
            && line.contains("searches=3")
            && line.contains("match_rate=0.667"),
        "{line}"
    );
}

/// The value of one series (name and labels as exposed) in a metrics page.
fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in metrics:\n{body}"))
}

/// A minimal HTTP/1.0 GET (no client crate needed for one request).
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
