//! Atelier's networks and their files: the style transformer and its architecture spec, the
//! frozen VGG loss networks, the perceptual losses, the self-describing model file, and
//! converters from other projects' formats.
//!
//! Invariants: no CLI work, no I/O beyond reading and writing model and weight files. Pixels
//! are RGB f32 in [0, 255], NCHW (see `pixels`).

pub mod convert;
pub mod error;
pub mod eval;
pub mod file;
pub mod loss;
pub mod pixels;
pub mod precision;
pub mod predictor;
pub mod spec;
pub mod style_vector;
pub mod transformer;
pub mod vgg;

pub use error::{Error, Result};
pub use file::{Model, ModelMeta, TrainingSummary};
pub use precision::Precision;
pub use predictor::{PredictorSpec, StylePredictor};
pub use spec::{Conditioning, NetSpec, Preset, Structure};
pub use transformer::{NormStats, StyleParams, TransformerNet};
pub use vgg::{Tap, Vgg, VggKind};
