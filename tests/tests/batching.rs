//! The batching engine seen from outside: overload behaviour and metrics.

mod common;

use std::collections::HashMap;

use common::{lfw_crop, raw_image, Server};
use tonic::Code;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

/// Far past capacity (512 concurrent callers, a queue of 64 faces): the excess is
/// refused with RESOURCE_EXHAUSTED, admitted requests are served, nothing else fails,
/// and the server serves normally once the load stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_fast_and_the_server_recovers() {
    let server = Server::start(&[("VARGID_BATCHING__QUEUE_CAPACITY", "64")]);
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
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{series} not in metrics:\n{body}"))
    };
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
