//! Finding the training photos in a folder tree.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::error::{Error, Result};

/// File extensions taken as photos, compared case-insensitively: the image list that
/// `stylize` folder scans use too.
pub use models::pixels::IMAGE_EXTENSIONS as PHOTO_EXTENSIONS;

/// The outcome of [`find_photos`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPhotos {
    /// Photo files, sorted, never empty.
    pub files: Vec<PathBuf>,
    /// Parts of the tree that could not be walked (symlink loops, unreadable folders,
    /// dangling links), one line each, for the caller to show: they do not stop the search.
    pub warnings: Vec<String>,
}

/// Walks `root` recursively, following symbolic links, for files with a photo extension.
/// Hidden files and folders (names starting with `.`, like macOS `._*` resource forks) below
/// `root` are left out. Errors if `root` is missing or not a folder, or holds no photo.
pub fn find_photos(root: &Path) -> Result<FoundPhotos> {
    if !root.exists() {
        return Err(Error::MissingFolder {
            path: root.to_path_buf(),
        });
    }
    if !root.is_dir() {
        return Err(Error::NotAFolder {
            path: root.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let walker = WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
        });
    for entry in walker {
        match entry {
            Ok(entry) => {
                if entry.file_type().is_file() && has_photo_extension(entry.path()) {
                    files.push(entry.into_path());
                }
            }
            // walkdir reports a symlink loop as an error for that entry and carries on.
            Err(error) => warnings.push(walk_warning(&error)),
        }
    }
    if files.is_empty() {
        return Err(Error::NoPhotos {
            path: root.to_path_buf(),
            extensions: PHOTO_EXTENSIONS.join(", "),
        });
    }
    files.sort();
    files.dedup();
    Ok(FoundPhotos { files, warnings })
}

/// Whether `path` ends in one of [`PHOTO_EXTENSIONS`], in any case.
pub use models::pixels::has_image_extension as has_photo_extension;

fn walk_warning(error: &walkdir::Error) -> String {
    let path = error
        .path()
        .map_or_else(|| "?".to_string(), |path| path.display().to_string());
    match (error.loop_ancestor(), error.io_error()) {
        (Some(ancestor), _) => format!(
            "skipping {path}: symbolic link loop back to {}",
            ancestor.display()
        ),
        (None, Some(io)) => format!("skipping {path}: {io}"),
        (None, None) => format!("skipping {path}: {error}"),
    }
}
