//! Column encodings: embeddings as little-endian f32 blobs, metadata as JSON.

use std::collections::BTreeMap;

use crate::error::StoreError;

pub fn embedding_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn blob_to_embedding(blob: &[u8]) -> Result<Vec<f32>, StoreError> {
    if !blob.len().is_multiple_of(4) {
        return Err(StoreError::Corrupt(format!(
            "embedding blob of {} bytes",
            blob.len()
        )));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

pub fn metadata_to_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

pub fn json_to_metadata(s: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip() {
        let v = vec![0.5, -1.25, f32::MIN_POSITIVE];
        assert_eq!(blob_to_embedding(&embedding_to_blob(&v)).unwrap(), v);
        assert!(blob_to_embedding(&[1, 2, 3]).is_err());
    }
}
