//! What a change may do, whichever database applies it (SQLite's writer, PostgreSQL's
//! transaction): the checks and merges both backends share.

use crate::types::IdentityRow;
use crate::StoreError;

/// Every embedding must have the gallery's width.
pub(crate) fn check_dims(
    gallery: &str,
    dim: usize,
    embeddings: &[Vec<f32>],
) -> Result<(), StoreError> {
    match embeddings.iter().find(|e| e.len() != dim) {
        Some(e) => Err(StoreError::DimensionMismatch {
            gallery: gallery.into(),
            expected: dim,
            got: e.len(),
        }),
        None => Ok(()),
    }
}

/// The identity as stored after a change: `row` itself when it is new, else `existing`
/// with `row`'s metadata keys replacing its own and, when `replace_name`, its name.
/// Also whether it was created.
pub(crate) fn merge_identity(
    existing: Option<IdentityRow>,
    row: IdentityRow,
    replace_name: bool,
) -> (IdentityRow, bool) {
    match existing {
        None => (row, true),
        Some(mut old) => {
            if replace_name {
                old.display_name = row.display_name;
            }
            old.metadata.extend(row.metadata);
            (old, false)
        }
    }
}
