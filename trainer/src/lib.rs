//! Atelier's training: a feed-forward style network (Johnson et al. 2016; several styles with
//! conditional instance norm, Dumoulin et al. 2017) learns from one style image per style and a
//! stream of photos, with checkpoints that resume exactly and TensorBoard logs.

pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod events;
pub mod lbfgs;
pub mod optimize;
pub mod prepare;
pub mod recipe;
pub mod run;
mod samples;
pub mod state;
pub mod train;
pub mod validation;

pub use checkpoint::Checkpoint;
pub use config::{LossConvention, TrainConfig};
pub use error::{Error, Result};
pub use prepare::{prepare, Launch, Prepared};
pub use recipe::{recipe, Overrides, RunFiles};
pub use train::{
    load_style_image, run, Event, LossValues, Outcome, StepLosses, StepReport, Trainer,
};
