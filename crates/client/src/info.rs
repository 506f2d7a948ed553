//! `vargid info` and `vargid galleries`: what the server runs and holds.

use serde_json::json;
use vargid_proto::v1 as pb;

use crate::connection::Client;
use crate::{json, ClientError};

pub async fn info(client: &mut Client, as_json: bool) -> Result<(), ClientError> {
    let i = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .map_err(ClientError::call("GetServiceInfo"))?
        .into_inner();
    if as_json {
        println!(
            "{}",
            json!({
                "server_version": i.server_version,
                "model": {"name": i.model_name, "version": i.model_version, "embedding_size": i.embedding_size, "precision": i.model_precision, "flip_test": i.flip_test},
                "execution_provider": i.execution_provider,
                "max_batch_size": i.max_batch_size,
                "match_threshold": i.match_threshold,
                "identity_count": i.identity_count,
                "gallery_size": i.gallery_size,
            })
        );
        return Ok(());
    }
    println!("server     vargid {}", i.server_version);
    println!(
        "model      {} {} ({}-d, {}), on {}, batches of up to {}",
        i.model_name,
        i.model_version,
        i.embedding_size,
        i.model_precision,
        i.execution_provider,
        i.max_batch_size
    );
    println!(
        "threshold  {:.3} (default match threshold)",
        i.match_threshold
    );
    println!(
        "enrolled   {} identities, {} templates (all galleries)",
        i.identity_count, i.gallery_size
    );
    Ok(())
}

pub async fn galleries(client: &mut Client, as_json: bool) -> Result<(), ClientError> {
    let list = client
        .list_galleries(pb::ListGalleriesRequest {})
        .await
        .map_err(ClientError::call("ListGalleries"))?
        .into_inner()
        .galleries;
    if as_json {
        let all: Vec<_> = list.iter().map(json::gallery).collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    println!(
        "{:<24} {:>10} {:>10} {:>9}  {:<16} model",
        "gallery", "identities", "templates", "threshold", "index"
    );
    for g in &list {
        let model = g
            .model
            .as_ref()
            .map(|m| format!("{} {}", m.name, m.version))
            .unwrap_or_default();
        println!(
            "{:<24} {:>10} {:>10} {:>9.3}  {:<16} {model}",
            g.name, g.identity_count, g.face_count, g.match_threshold, g.index
        );
    }
    Ok(())
}
