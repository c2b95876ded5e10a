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
    #[error("{path} already exists (use --force to overwrite it)")]
    OutputExists { path: PathBuf },
    #[error("unknown precision `{0}` (use f32, bf16 or f16)")]
    UnknownPrecision(String),
    #[error("unknown device `{0}` (use auto, cpu, cuda or cuda:N)")]
    UnknownDevice(String),
    #[error("cuda:{index} is not available ({count} CUDA devices)")]
    DeviceUnavailable { index: usize, count: usize },
    #[error("f16 needs a CUDA device; use bf16 on the CPU")]
    F16NeedsCuda,
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
    #[error(
        "the image declares {width}x{height} pixels ({:.1} megapixels), over the limit of {:.1} \
         megapixels (--max-pixels)",
        (*width as f64) * (*height as f64) / 1e6,
        *max_pixels as f64 / 1e6
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("cannot convert {path}: {reason}")]
    Convert { path: PathBuf, reason: String },
    #[error("{path} is not an atelier style vector: {reason}")]
    NotAStyleVector { path: PathBuf, reason: String },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
