use std::path::PathBuf;

/// Everything that can go wrong in the `trainer` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    #[error("cannot decode {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path} is not an atelier training checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("the {term} loss became non-finite at step {step}; the last good checkpoint is kept")]
    NonFinite { term: String, step: u64 },
    #[error(transparent)]
    Model(#[from] models::Error),
    #[error(transparent)]
    Data(#[from] datasets::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
