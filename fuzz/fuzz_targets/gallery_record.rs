//! The gallery record decoder: the columns vargid-store reads back from SQLite
//! (embedding blobs, metadata JSON) must decode or fail with an error, never panic,
//! and what decodes must encode back to the same value.
//!
//! Input: one selector byte, then the column bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vargid_store::codec::{
    blob_to_embedding, embedding_to_blob, json_to_metadata, metadata_to_json,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, column)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        if let Ok(embedding) = blob_to_embedding(column) {
            assert_eq!(embedding.len() * 4, column.len());
            assert_eq!(embedding_to_blob(&embedding), column);
        }
    } else if let Ok(text) = std::str::from_utf8(column) {
        if let Ok(metadata) = json_to_metadata(text) {
            let again =
                json_to_metadata(&metadata_to_json(&metadata)).expect("re-encoded metadata");
            assert_eq!(again, metadata);
        }
    }
});
