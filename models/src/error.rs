use std::path::PathBuf;

/// Everything that can go wrong in the `models` crate.
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
    #[error("{path} is not an atelier model file: {reason}")]
    NotAModel { path: PathBuf, reason: String },
    #[error("{path} has model format version {found}, this atelier reads version {supported}")]
    UnsupportedVersion {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: unexpected tensor `{name}` (not part of this network)")]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("invalid network spec: {0}")]
    InvalidSpec(String),
    #[error("unknown architecture `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("image of {height}x{width} is too small for the network (at least {min}x{min})")]
    InputTooSmall { height: i64, width: i64, min: i64 },
    #[error("invalid style selection: {0}")]
    InvalidStyle(String),
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("cannot convert {path}: {reason}")]
    Convert { path: PathBuf, reason: String },
    #[error("{path} is not an atelier style vector: {reason}")]
    NotAStyleVector { path: PathBuf, reason: String },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
