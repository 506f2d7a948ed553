//! Request validation: every field a caller sends, checked before any work is done,
//! with an `INVALID_ARGUMENT` that names the field (`images[2].landmarks.points[4]`).
//!
//! A crate of its own, free of the index and the server, so that the validation the
//! handlers run can be fuzzed from raw protobuf bytes (`fuzz/`) without building FAISS.
//!
//! - [`image`]: request images (encoded or raw pixels) and where their faces are.
//! - [`fields`]: identity ids, thresholds, page tokens and sizes, metadata.
//! - [`import`]: identities and templates of an ImportGallery request.
//! - [`template`]: the model templates come from, and probe templates.

pub mod fields;
pub mod image;
pub mod import;
pub mod template;

pub use image::{ImageInput, ImageSource, Location};
