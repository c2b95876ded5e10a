//! Atelier's inference runtime: one photo, folders of thousands (a decode → network → encode
//! pipeline), huge images (tiles that share whole-image statistics) and video (through the
//! `ffmpeg` and `ffprobe` programs), with the style from a trained model, the built-in styles or
//! any picture (`StyleSource`).
//!
//! Invariants: depends on `models` only (not on training); pixels cross to and from tensors
//! only through `models::pixels`; outputs are written under a temporary name and renamed.

pub mod builtin;
pub mod error;
pub mod ffmpeg;
pub mod image_io;
pub mod jobs;
pub mod pipeline;
pub mod segment;
pub mod shard;
pub mod sheet;
pub mod smoother;
pub mod style_source;
pub mod stylizer;
pub mod tiling;
pub mod video;

pub use error::{Error, Result};
pub use image_io::{OutputFormat, Resize};
pub use jobs::{Job, Naming, Source, Target};
pub use pipeline::{Outcome, PipelineOptions, Record, Summary};
pub use shard::{Shard, ShardSpec};
pub use style_source::{StylePicture, StyleSource};
pub use stylizer::{interpolate_style_vector, Finish, PhotoStyle, StyleMix, Stylizer};
pub use tiling::TileMode;
pub use video::{VideoInfo, VideoOptions, VideoReport};

use std::path::Path;

/// A model ready to be given to a `Stylizer`, and the style used when none is chosen.
pub struct LoadedModel {
    pub model: models::Model,
    pub default_style: usize,
    /// How messages name it: its path, or the built-in model's name.
    pub name: String,
}

/// Loads `path` onto `device`, or the built-in model when `path` is `None`.
pub fn load_model(path: Option<&Path>, device: tch::Device) -> Result<LoadedModel> {
    match path {
        Some(path) => Ok(LoadedModel {
            model: models::Model::load(path, device)?,
            default_style: 0,
            name: path.display().to_string(),
        }),
        None => Ok(LoadedModel {
            model: builtin::load(device)?,
            default_style: builtin::DEFAULT_STYLE,
            name: builtin::NAME.to_string(),
        }),
    }
}

/// Tensors of hundreds of megabytes come and go for every tile and batch. glibc serves each
/// allocation over 32 MiB with a fresh mmap whose pages the kernel zeroes on first touch: on an
/// 8000x6000 image that was a third of the run as system time. Taking them from the heap, and
/// keeping up to 1 GiB of freed memory for reuse, removes most of it. Process-wide, so the
/// binary calls it once, before the work.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; it is called before other threads
    // allocate, and a rejected value leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
