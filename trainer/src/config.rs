//! The full configuration of a training run. It is stored in every checkpoint, so `--resume`
//! needs nothing else, and summarised in the trained model's header.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything that determines a run. Paths are as the user gave them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// One style image per style of the network, in conditional-norm row order.
    pub style_images: Vec<PathBuf>,
    /// Style names stored in the model (file stems of the style images, made unique).
    pub style_names: Vec<String>,
    /// Folder of training photos (searched recursively).
    pub data_dir: PathBuf,
    /// Where the trained model goes.
    pub output: PathBuf,
    /// Where checkpoints go (one file, replaced atomically).
    pub checkpoint_path: PathBuf,
    /// `vgg16` or `vgg19`.
    pub loss_net: String,
    /// torchvision-layout VGG weights (safetensors).
    pub loss_weights: PathBuf,
    /// VGG taps compared with the content photo, e.g. `relu2_2`.
    pub content_taps: Vec<String>,
    /// VGG taps whose Gram matrices are compared with the style's.
    pub style_taps: Vec<String>,
    /// One weight per style tap (multiplies that tap's Gram loss before `style_weight`).
    pub style_layer_weights: Vec<f64>,
    /// Architecture preset (`johnson`, `johnson-half`, ...).
    pub arch: String,
    /// Total number of optimizer steps.
    pub n_steps: u64,
    pub batch_size: usize,
    /// Side of the square training crops.
    pub image_size: i64,
    /// Shorter side the style images are resized to (aspect kept); `None` keeps their size.
    pub style_size: Option<i64>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub lr: f64,
    /// Step decay: multiply the learning rate by `lr_decay` every `lr_decay_every` steps.
    pub lr_decay: f64,
    pub lr_decay_every: Option<u64>,
    pub seed: u64,
    /// `f32`, `bf16` or `f16`.
    pub precision: String,
    pub checkpoint_every: u64,
    /// Steps between host-side reads of the losses (progress, logs, non-finite check).
    pub log_every: u64,
    pub sample_image: Option<PathBuf>,
    pub sample_every: u64,
    /// TensorBoard folder.
    pub log_dir: Option<PathBuf>,
}

impl TrainConfig {
    /// The learning rate at a (0-based) step.
    pub fn lr_at(&self, step: u64) -> f64 {
        match self.lr_decay_every {
            Some(every) if every > 0 => self.lr * self.lr_decay.powi((step / every) as i32),
            _ => self.lr,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |message: &str| Err(Error::Config(message.to_string()));
        if self.style_images.is_empty() {
            return fail("at least one style image is needed");
        }
        if self.style_names.len() != self.style_images.len() {
            return fail("one style name per style image is needed");
        }
        if self.batch_size == 0 {
            return fail("the batch size must be at least 1");
        }
        if self.image_size < models::transformer::MIN_INPUT_SIDE {
            return fail("the image size must be at least 16");
        }
        if matches!(self.style_size, Some(s) if s < 16) {
            return fail("the style size must be at least 16");
        }
        if self.n_steps == 0 {
            return fail("at least one step is needed");
        }
        if self.content_taps.is_empty() || self.style_taps.is_empty() {
            return fail("at least one content tap and one style tap are needed");
        }
        if self.style_layer_weights.len() != self.style_taps.len() {
            return Err(Error::Config(format!(
                "{} style layer weights for {} style taps",
                self.style_layer_weights.len(),
                self.style_taps.len()
            )));
        }
        let weights = [
            self.content_weight,
            self.style_weight,
            self.tv_weight,
            self.lr,
            self.lr_decay,
        ];
        if weights
            .iter()
            .chain(&self.style_layer_weights)
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return fail("loss weights and learning rates must be finite and not negative");
        }
        if self.checkpoint_every == 0 || self.log_every == 0 || self.sample_every == 0 {
            return fail("--checkpoint-every, --log-every and --sample-every must be at least 1");
        }
        Ok(())
    }
}

/// Style names from image file stems, suffixed `-2`, `-3`, ... where stems repeat.
pub fn style_names(images: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for path in images {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "style".to_string());
        let mut name = stem.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{stem}-{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_stems_get_suffixes() {
        let images = ["a/x.jpg", "b/x.png", "y.jpg"].map(PathBuf::from);
        assert_eq!(style_names(&images), ["x", "x-2", "y"]);
    }
}
