//! The full configuration of a training run. It is stored in every checkpoint, so `--resume`
//! needs nothing else, and summarised in the trained model's header.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the loss terms are scaled before their weights apply.
///
/// `Balanced` (the default) makes every term a relative error, so that each style layer starts
/// near 1 whatever its depth, the loss network (VGG-16 or VGG-19, whose feature scales differ
/// by orders of magnitude) or the image size, and the weights mean the same everywhere: each
/// style layer's Gram MSE is divided by `mean(G²) + mean(T²)` of the output's and the target's
/// Gram matrices (held constant, `models::loss::balanced_style_loss`), each content layer's
/// MSE by the mean square of the batch's target features, and the total-variation term is
/// taken on pixels in [0, 1].
///
/// `PytorchExamples` and `Lengstrom` are the unnormalised losses both of those projects use
/// (Gram / (c·h·w), means of squared errors, pixels in [0, 255]); they differ only in their
/// default weights, which are their published recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossConvention {
    #[default]
    Balanced,
    PytorchExamples,
    Lengstrom,
}

impl LossConvention {
    pub const ALL: [LossConvention; 3] = [
        LossConvention::Balanced,
        LossConvention::PytorchExamples,
        LossConvention::Lengstrom,
    ];

    /// Whether terms are divided by their targets' scale.
    pub fn normalised(self) -> bool {
        self == LossConvention::Balanced
    }

    pub fn name(self) -> &'static str {
        match self {
            LossConvention::Balanced => "balanced",
            LossConvention::PytorchExamples => "pytorch-examples",
            LossConvention::Lengstrom => "lengstrom",
        }
    }

    /// What checkpoints written before conventions existed computed.
    fn unnormalised() -> Self {
        LossConvention::PytorchExamples
    }
}

impl std::fmt::Display for LossConvention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LossConvention {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown loss convention `{s}` (known: balanced, pytorch-examples, lengstrom)"
                ))
            })
    }
}

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
    /// How the loss terms are scaled (older checkpoints: the unnormalised losses).
    #[serde(default = "LossConvention::unnormalised")]
    pub loss_convention: LossConvention,
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
    /// Folder of validation photos (at most 8 of them, evenly spaced, are used); `None`: the
    /// `val_holdout` photos held out of `data_dir`.
    #[serde(default)]
    pub val_data: Option<PathBuf>,
    /// Photos of `data_dir` held out for validation, never trained on.
    #[serde(default)]
    pub val_holdout: usize,
    /// Steps between validations.
    #[serde(default = "default_val_every")]
    pub val_every: u64,
    /// The multi-style model this run adds its styles to (`builtin`: the built-in 26-style
    /// network), as given; its weights start the run.
    #[serde(default)]
    pub extend: Option<PathBuf>,
    /// The extended model's own styles, in row order; the new styles' rows follow them.
    #[serde(default)]
    pub extend_base_styles: Vec<String>,
    /// Steps at the end of an extending run that train every weight (the old styles then
    /// change); before them only the new styles' γ/β rows train.
    #[serde(default)]
    pub extend_finetune_steps: u64,
}

fn default_val_every() -> u64 {
    crate::recipe::DEFAULT_CHECKPOINT_EVERY
}

impl TrainConfig {
    /// Styles of the network: those of an extended model, then the trained ones.
    pub fn n_styles(&self) -> usize {
        self.extend_base_styles.len() + self.style_images.len()
    }

    /// The network's style names, in row order.
    pub fn model_style_names(&self) -> Vec<String> {
        let mut names = self.extend_base_styles.clone();
        names.extend(self.style_names.iter().cloned());
        names
    }

    /// Steps that train only the new styles' rows of an extended model (0 otherwise).
    pub fn frozen_steps(&self) -> u64 {
        if self.extend.is_some() {
            self.n_steps.saturating_sub(self.extend_finetune_steps)
        } else {
            0
        }
    }

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
        if self.checkpoint_every == 0
            || self.log_every == 0
            || self.sample_every == 0
            || self.val_every == 0
        {
            return fail(
                "--checkpoint-every, --log-every, --sample-every and --val-every must be at least 1",
            );
        }
        Ok(())
    }
}

/// Style names from image file stems, suffixed `-2`, `-3`, ... where stems repeat.
pub fn style_names(images: &[PathBuf]) -> Vec<String> {
    style_names_after(&[], images)
}

/// Like [`style_names`], also unlike every name of `existing` (an extended model's styles).
pub fn style_names_after(existing: &[String], images: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = existing.to_vec();
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
    names.split_off(existing.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_stems_get_suffixes() {
        let images = ["a/x.jpg", "b/x.png", "y.jpg"].map(PathBuf::from);
        assert_eq!(style_names(&images), ["x", "x-2", "y"]);
        let existing = ["y".to_string(), "z".to_string()];
        assert_eq!(style_names_after(&existing, &images), ["x", "x-2", "y-2"]);
    }
}
