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
    /// Flags that do not fit together, or a resumed run's flag that disagrees with its
    /// checkpoint; the message names the flags.
    #[error("{0}")]
    Flags(String),
    /// One of the run's inputs failed to load: `what` says which (`style image`, `loss network`).
    #[error("{what}: {source}")]
    Input {
        what: &'static str,
        source: Box<Error>,
    },
    #[error("{path} is missing: run `make vgg` to fetch the VGG-19 loss network, or give --loss-weights")]
    MissingVggWeights { path: PathBuf },
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
