//! Health and reflection: what grpcurl and ghz rely on without the proto file.

mod common;

use common::Server;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

// Multi-threaded: terminate() blocks one worker while another lets the client
// connections see the server's GOAWAY and close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_serves_and_reflection_lists_the_services() {
    let mut server = Server::start(&[]);
    let channel = server.channel().await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "vargid.v1.FaceService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            reply.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.next().await.expect("one reply").expect("ok reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["vargid.v1.FaceService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // SIGTERM: a clean, zero exit, well within the grace period.
    drop((replies, reflection, health));
    let started = std::time::Instant::now();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "graceful shutdown took {took:?}"
    );
}
