//! A labelled photo folder, `DIR/<person>/<photo>`: what `enroll` and `evaluate` read.

use std::path::{Path, PathBuf};

use crate::{photo, ClientError};

/// One sub-folder: its name and its photos, sorted by path.
#[derive(Debug, Clone)]
pub struct PersonPhotos {
    pub name: String,
    pub photos: Vec<PathBuf>,
}

/// The sub-folders holding at least one photo, sorted by name. Other files and empty
/// folders are ignored; a folder without any photo is an error.
pub fn read(dir: &Path) -> Result<Vec<PersonPhotos>, ClientError> {
    let entries = std::fs::read_dir(dir).map_err(ClientError::io(dir))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut people = Vec::new();
    for folder in folders {
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(ClientError::io(&folder))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && photo::is_photo(p))
            .collect();
        photos.sort();
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !photos.is_empty() {
            people.push(PersonPhotos { name, photos });
        }
    }
    if people.is_empty() {
        return Err(ClientError::Input {
            path: dir.into(),
            message: "no sub-folder with photos (expected DIR/<person>/<photo>.jpg)".into(),
        });
    }
    Ok(people)
}
