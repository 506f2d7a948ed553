//! Photos read from disk into the API's `Image` (the server decodes them: JPEG, PNG
//! or WebP; a 112x112 image is taken as an aligned crop, anything else is detected).

use std::path::Path;

use vargid_proto::v1 as pb;

use crate::ClientError;

/// Extensions the server decodes; other files in an enrollment folder are ignored.
pub const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

pub fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

pub fn read(path: &Path) -> Result<pb::Image, ClientError> {
    let bytes = std::fs::read(path).map_err(ClientError::io(path))?;
    Ok(pb::Image {
        source: Some(pb::image::Source::Encoded(bytes)),
        ..Default::default()
    })
}
