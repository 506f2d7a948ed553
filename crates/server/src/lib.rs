//! The vargid server: settings, the batching engine, the face pipeline, the gRPC
//! service, metrics, logging and shutdown. `main.rs` only parses arguments.

pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod faces;
pub mod galleries;
pub mod grpc;
pub mod match_scores;
pub mod metrics;
pub mod provider_choice;
pub mod record;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod thread_priority;
