use std::path::PathBuf;

/// Everything that can go wrong in the `datasets` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("photo folder {path} does not exist")]
    MissingFolder { path: PathBuf },
    #[error("{path} is not a folder")]
    NotAFolder { path: PathBuf },
    #[error("no photos ({extensions}) found in {path}")]
    NoPhotos { path: PathBuf, extensions: String },
    #[error("{found} photos are fewer than the batch size {batch_size}")]
    TooFewPhotos { found: usize, batch_size: usize },
    #[error("none of the {total} photos is usable (e.g. {example})")]
    NoUsablePhotos { total: usize, example: String },
    #[error("only {usable} of {total} photos are usable, fewer than the batch size {batch_size}")]
    TooFewUsablePhotos {
        usable: usize,
        total: usize,
        batch_size: usize,
    },
    #[error("invalid photo stream setting: {0}")]
    InvalidConfig(String),
    #[error("cannot resume at photo {position} of {total}: the photo set has changed")]
    InvalidState { position: usize, total: usize },
    #[error("cannot start the photo decoding threads: {0}")]
    ThreadPool(String),
    #[error("the photo loader stopped unexpectedly{0}")]
    LoaderStopped(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
