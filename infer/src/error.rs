use std::path::PathBuf;

/// Everything that can go wrong in the `infer` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] models::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot decode image: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: cannot encode image: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("unsupported output format `{0}` (use png, jpg, jpeg, webp, bmp or tiff)")]
    UnsupportedFormat(String),
    #[error("invalid style selection: {0}")]
    Style(String),
    #[error("{0}")]
    Invalid(String),
    #[error("`{0}` was not found: install FFmpeg (Debian/Ubuntu: `sudo apt-get install ffmpeg`)")]
    FfmpegMissing(&'static str),
    #[error("interrupted")]
    Interrupted,
    #[error("{program} failed on {path}: {reason}")]
    Ffmpeg {
        program: &'static str,
        path: PathBuf,
        reason: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
