//! The training recipe: the defaults of a run for each loss network, the options that override
//! them, and which options a resumed run may change. `atelier train` and `atelier bench train`
//! both build their configuration here, so a default is written once.

use std::fmt::Debug;
use std::path::PathBuf;

use models::vgg::{Tap, VggKind};
use models::Precision;

use crate::checkpoint;
use crate::config::{style_names, LossConvention, TrainConfig};
use crate::error::{Error, Result};
use crate::validation;

/// Where `make vgg` puts the VGG-19 weights: the loss-network weights used when none are given.
pub const DEFAULT_VGG19_WEIGHTS: &str = "weights/vgg19.safetensors";
pub const DEFAULT_LOSS_NET: VggKind = VggKind::Vgg19;
pub const DEFAULT_ARCH: &str = "johnson";
pub const DEFAULT_EPOCHS: u64 = 2;
pub const DEFAULT_BATCH_SIZE: usize = 4;
/// Side of the square training crops.
pub const DEFAULT_IMAGE_SIZE: i64 = 256;
pub const DEFAULT_LR: f64 = 1e-3;
/// Adam's learning rate when only an extended model's new γ/β rows train: they are a few
/// thousand numbers of order 1, which 1e-3 moves too slowly for a run of minutes.
pub const DEFAULT_EXTEND_LR: f64 = 1e-2;
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
pub const DEFAULT_LOG_EVERY: u64 = 10;

pub const DEFAULT_LOSS_CONVENTION: LossConvention = LossConvention::Balanced;

/// The loss weights (content, style, total variation) of a convention, the same for either
/// loss network. For the unnormalised conventions they are the published recipes
/// (pytorch/examples `fast_neural_style` with VGG-16, lengstrom/fast-style-transfer with
/// VGG-19). The balanced ones carry over the hand-tuned CPU recipe of the unnormalised losses
/// (content 7.5, style 20 × layers 500, 12, 30, 1, 1000 with the Caffe VGG-19, swirls): in
/// balanced terms (docs/training.md) its layers weigh 1 to 16 times the content near the
/// style, most of them 14 to 16, and 10 is their middle; the TV weight is lengstrom's 200 on
/// [0, 1] pixels, on the same content scale.
pub fn loss_weights(convention: LossConvention) -> (f64, f64, f64) {
    match convention {
        LossConvention::Balanced => (1.0, 10.0, 5.0),
        LossConvention::PytorchExamples => (1e5, 1e10, 0.0),
        LossConvention::Lengstrom => (7.5, 100.0, 200.0),
    }
}

/// What a run reads and writes: the part of a configuration that has no default.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFiles {
    pub style_images: Vec<PathBuf>,
    pub data_dir: PathBuf,
    pub output: PathBuf,
}

/// Steps in `epochs` passes over `n_photos`: the stream drops each epoch's last incomplete
/// batch.
pub fn steps_for_epochs(epochs: u64, n_photos: usize, batch_size: usize) -> u64 {
    let per_epoch = (n_photos / batch_size.max(1)).max(1) as u64;
    epochs * per_epoch
}

/// The recipe for `loss_net`: its published layers, the balanced losses and their weights, and
/// Atelier's defaults for everything else (batch 4 of 256² crops, Adam at 1e-3, 2 epochs over
/// `n_photos`, seed 42, a checkpoint every 1000 steps, losses read every 10, a few photos held
/// out of large folders and validated every 1000 steps, the `johnson` network, the VGG-19
/// weights from `make vgg`).
pub fn recipe(loss_net: VggKind, files: RunFiles, n_photos: usize) -> TrainConfig {
    let convention = DEFAULT_LOSS_CONVENTION;
    let (content_weight, style_weight, tv_weight) = loss_weights(convention);
    let style_taps = tap_names(&loss_net.default_style_taps());
    TrainConfig {
        style_names: style_names(&files.style_images),
        checkpoint_path: checkpoint::default_path(&files.output, None),
        style_images: files.style_images,
        data_dir: files.data_dir,
        output: files.output,
        loss_net: loss_net.to_string(),
        loss_weights: PathBuf::from(DEFAULT_VGG19_WEIGHTS),
        content_taps: tap_names(&loss_net.default_content_taps()),
        style_layer_weights: vec![1.0; style_taps.len()],
        loss_convention: convention,
        style_taps,
        arch: DEFAULT_ARCH.to_string(),
        n_steps: steps_for_epochs(
            DEFAULT_EPOCHS,
            n_photos - validation::default_holdout(n_photos),
            DEFAULT_BATCH_SIZE,
        ),
        batch_size: DEFAULT_BATCH_SIZE,
        image_size: DEFAULT_IMAGE_SIZE,
        style_size: None,
        content_weight,
        style_weight,
        tv_weight,
        lr: DEFAULT_LR,
        lr_decay: 1.0,
        lr_decay_every: None,
        seed: DEFAULT_SEED,
        precision: Precision::F32.to_string(),
        checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        log_every: DEFAULT_LOG_EVERY,
        sample_image: None,
        sample_every: DEFAULT_CHECKPOINT_EVERY,
        log_dir: None,
        val_data: None,
        val_holdout: validation::default_holdout(n_photos),
        val_every: DEFAULT_CHECKPOINT_EVERY,
        extend: None,
        extend_base_styles: Vec::new(),
        extend_finetune_steps: 0,
    }
}

fn tap_names(taps: &[Tap]) -> Vec<String> {
    taps.iter().map(ToString::to_string).collect()
}

/// The options given for a run, each `None` (or empty) where it was not given: on a fresh run
/// they replace the recipe's defaults, on a resumed one they must agree with the checkpoint
/// except those that only say where the model goes, how long the run is, how it is logged and
/// sampled, where its checkpoint goes and its precision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub style_images: Vec<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub loss_net: Option<VggKind>,
    pub loss_weights: Option<PathBuf>,
    pub content_taps: Option<Vec<Tap>>,
    pub style_taps: Option<Vec<Tap>>,
    pub style_layer_weights: Option<Vec<f64>>,
    /// Sets the loss scaling and, for the weights not given, that convention's defaults.
    pub loss_convention: Option<LossConvention>,
    pub content_weight: Option<f64>,
    pub style_weight: Option<f64>,
    pub tv_weight: Option<f64>,
    /// The run length in steps; wins over `epochs`.
    pub steps: Option<u64>,
    pub epochs: Option<u64>,
    pub batch_size: Option<usize>,
    pub image_size: Option<i64>,
    pub style_size: Option<i64>,
    pub lr: Option<f64>,
    pub lr_decay: Option<f64>,
    pub lr_decay_every: Option<u64>,
    /// Architecture preset, checked by `models::NetSpec::preset`.
    pub arch: Option<String>,
    pub seed: Option<u64>,
    pub precision: Option<Precision>,
    pub checkpoint_every: Option<u64>,
    /// Folder for the checkpoint instead of beside the output.
    pub checkpoint_dir: Option<PathBuf>,
    pub sample_image: Option<PathBuf>,
    pub sample_every: Option<u64>,
    pub log_every: Option<u64>,
    pub log_dir: Option<PathBuf>,
    /// Validation photos instead of some held out of the training folder.
    pub val_data: Option<PathBuf>,
    pub val_every: Option<u64>,
    /// A multi-style model to add the styles to (`builtin` for the built-in one).
    pub extend: Option<PathBuf>,
    /// Steps after the γ/β-only ones that train every weight.
    pub extend_finetune_steps: Option<u64>,
}

impl Overrides {
    /// A fresh run: the recipe for the loss network, with every given option in place of its
    /// default. `n_photos` sets the run length from the epochs when no step count is given.
    pub fn fresh(&self, n_photos: usize) -> Result<TrainConfig> {
        let (Some(data_dir), Some(output)) = (&self.data_dir, &self.output) else {
            return Err(Error::Flags(
                "--style, --data and --output are required".into(),
            ));
        };
        let loss_net = self.loss_net.unwrap_or(DEFAULT_LOSS_NET);
        if loss_net == VggKind::Vgg16 && self.loss_weights.is_none() {
            return Err(Error::Flags(
                "--loss-net vgg16 needs --loss-weights (torchvision's VGG-16 weights as .safetensors or .pth)"
                    .into(),
            ));
        }
        let files = RunFiles {
            style_images: self.style_images.clone(),
            data_dir: data_dir.clone(),
            output: output.clone(),
        };
        let mut config = recipe(loss_net, files, n_photos);
        config.checkpoint_path =
            checkpoint::default_path(&config.output, self.checkpoint_dir.as_deref());
        set(&mut config.loss_weights, &self.loss_weights);
        if let Some(taps) = &self.content_taps {
            config.content_taps = tap_names(taps);
        }
        if let Some(taps) = &self.style_taps {
            config.style_taps = tap_names(taps);
        }
        config.style_layer_weights = self
            .style_layer_weights
            .clone()
            .unwrap_or_else(|| vec![1.0; config.style_taps.len()]);
        if let Some(convention) = self.loss_convention {
            config.loss_convention = convention;
            (config.content_weight, config.style_weight, config.tv_weight) =
                loss_weights(convention);
        }
        set(&mut config.content_weight, &self.content_weight);
        set(&mut config.style_weight, &self.style_weight);
        set(&mut config.tv_weight, &self.tv_weight);
        set(&mut config.batch_size, &self.batch_size);
        set(&mut config.image_size, &self.image_size);
        config.style_size = self.style_size;
        set(&mut config.lr, &self.lr);
        set(&mut config.lr_decay, &self.lr_decay);
        config.lr_decay_every = self.lr_decay_every;
        set(&mut config.arch, &self.arch);
        set(&mut config.seed, &self.seed);
        if let Some(precision) = self.precision {
            config.precision = precision.to_string();
        }
        set(&mut config.checkpoint_every, &self.checkpoint_every);
        set(&mut config.log_every, &self.log_every);
        config.sample_image = self.sample_image.clone();
        config.sample_every = self.sample_every.unwrap_or(config.checkpoint_every);
        config.log_dir = self.log_dir.clone();
        if self.val_data.is_some() {
            config.val_data = self.val_data.clone();
            config.val_holdout = 0;
        }
        config.val_every = self.val_every.unwrap_or(config.checkpoint_every);
        config.n_steps = self.n_steps(n_photos - config.val_holdout, config.batch_size);
        match &self.extend {
            Some(base) => {
                if self.arch.is_some() {
                    return Err(Error::Flags(
                        "--arch does not go with --extend: the extended network keeps its architecture"
                            .into(),
                    ));
                }
                config.extend = Some(base.clone());
                config.extend_finetune_steps = self.extend_finetune_steps.unwrap_or(0);
                config.n_steps += config.extend_finetune_steps;
                if self.lr.is_none() {
                    config.lr = DEFAULT_EXTEND_LR;
                }
            }
            None if self.extend_finetune_steps.is_some() => {
                return Err(Error::Flags(
                    "--extend-finetune-steps needs --extend".into(),
                ));
            }
            None => {}
        }
        models::NetSpec::preset(&config.arch)?;
        Ok(config)
    }

    /// A resumed run: the checkpoint's configuration `saved`. Options that change what is
    /// computed must equal the saved ones (a resumed run is the same run); the output, the run
    /// length, logging, sampling, checkpoint folder and precision may change.
    pub fn resumed(&self, saved: &TrainConfig, n_photos: usize) -> Result<TrainConfig> {
        let given_styles = (!self.style_images.is_empty()).then(|| self.style_images.clone());
        same("--style", given_styles, &saved.style_images)?;
        same("--data", self.data_dir.clone(), &saved.data_dir)?;
        same(
            "--loss-net",
            self.loss_net.map(|kind| kind.to_string()),
            &saved.loss_net,
        )?;
        same(
            "--loss-weights",
            self.loss_weights.clone(),
            &saved.loss_weights,
        )?;
        same_taps("--content-layers", &self.content_taps, &saved.content_taps)?;
        same_taps("--style-layers", &self.style_taps, &saved.style_taps)?;
        same(
            "--style-layer-weights",
            self.style_layer_weights.clone(),
            &saved.style_layer_weights,
        )?;
        same(
            "--loss-convention",
            self.loss_convention,
            &saved.loss_convention,
        )?;
        same(
            "--content-weight",
            self.content_weight,
            &saved.content_weight,
        )?;
        same("--style-weight", self.style_weight, &saved.style_weight)?;
        same("--tv-weight", self.tv_weight, &saved.tv_weight)?;
        same("--batch-size", self.batch_size, &saved.batch_size)?;
        same("--image-size", self.image_size, &saved.image_size)?;
        same("--style-size", self.style_size.map(Some), &saved.style_size)?;
        same("--lr", self.lr, &saved.lr)?;
        same("--lr-decay", self.lr_decay, &saved.lr_decay)?;
        same(
            "--lr-decay-every",
            self.lr_decay_every.map(Some),
            &saved.lr_decay_every,
        )?;
        same("--arch", self.arch.clone(), &saved.arch)?;
        same("--seed", self.seed, &saved.seed)?;
        // Validation photos never train, so they decide which photos do.
        same(
            "--val-data",
            self.val_data.clone().map(Some),
            &saved.val_data,
        )?;
        same("--extend", self.extend.clone().map(Some), &saved.extend)?;
        same(
            "--extend-finetune-steps",
            self.extend_finetune_steps,
            &saved.extend_finetune_steps,
        )?;

        let mut config = saved.clone();
        // A new output branches the run: its checkpoint goes with it, the old one is kept.
        if let Some(output) = self.output.as_ref().filter(|o| **o != saved.output) {
            config.output = output.clone();
            config.checkpoint_path =
                checkpoint::default_path(output, self.checkpoint_dir.as_deref());
        }
        if self.steps.is_some() || self.epochs.is_some() {
            config.n_steps = self.n_steps(
                n_photos - saved.val_holdout.min(n_photos),
                config.batch_size,
            ) + saved.extend_finetune_steps;
        }
        set(&mut config.val_every, &self.val_every);
        if let Some(precision) = self.precision {
            config.precision = precision.to_string();
        }
        set(&mut config.checkpoint_every, &self.checkpoint_every);
        set(&mut config.sample_every, &self.sample_every);
        set(&mut config.log_every, &self.log_every);
        if self.sample_image.is_some() {
            config.sample_image = self.sample_image.clone();
        }
        if self.log_dir.is_some() {
            config.log_dir = self.log_dir.clone();
        }
        if let Some(dir) = &self.checkpoint_dir {
            config.checkpoint_path = checkpoint::default_path(&config.output, Some(dir));
        }
        Ok(config)
    }

    fn n_steps(&self, n_photos: usize, batch_size: usize) -> u64 {
        self.steps.unwrap_or_else(|| {
            steps_for_epochs(self.epochs.unwrap_or(DEFAULT_EPOCHS), n_photos, batch_size)
        })
    }
}

fn set<T: Clone>(slot: &mut T, given: &Option<T>) {
    if let Some(value) = given {
        *slot = value.clone();
    }
}

/// A flag given on resume must equal the checkpoint's value.
fn same<T: PartialEq + Debug>(flag: &str, given: Option<T>, saved: &T) -> Result<()> {
    match given {
        Some(value) if value != *saved => Err(Error::Flags(format!(
            "{flag} {value:?} differs from the checkpoint's {saved:?}; it changes what is trained, so a resumed run keeps the checkpoint's (start a new run to change it)"
        ))),
        _ => Ok(()),
    }
}

/// Taps compared by what they name, so `relu02_2` in an old checkpoint equals `relu2_2`.
fn same_taps(flag: &str, given: &Option<Vec<Tap>>, saved: &[String]) -> Result<()> {
    let canonical: Vec<String> = saved
        .iter()
        .map(|name| {
            name.parse::<Tap>()
                .map_or_else(|_| name.clone(), |t| t.to_string())
        })
        .collect();
    same(flag, given.as_deref().map(tap_names), &canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given_files() -> Overrides {
        Overrides {
            style_images: vec![PathBuf::from("styles/a.jpg"), PathBuf::from("b/a.png")],
            data_dir: Some(PathBuf::from("photos")),
            output: Some(PathBuf::from("out/model.safetensors")),
            ..Overrides::default()
        }
    }

    #[test]
    fn the_recipe_holds_each_loss_networks_published_defaults() {
        let vgg19 = given_files().fresh(100).unwrap();
        assert_eq!(vgg19.loss_net, "vgg19");
        assert_eq!(vgg19.loss_convention, LossConvention::Balanced);
        assert_eq!(
            (vgg19.content_weight, vgg19.style_weight, vgg19.tv_weight),
            (1.0, 10.0, 5.0)
        );
        let lengstrom = Overrides {
            loss_convention: Some(LossConvention::Lengstrom),
            ..given_files()
        }
        .fresh(100)
        .unwrap();
        assert_eq!(
            (
                lengstrom.content_weight,
                lengstrom.style_weight,
                lengstrom.tv_weight
            ),
            (7.5, 100.0, 200.0)
        );
        assert_eq!(vgg19.content_taps, ["relu4_2"]);
        assert_eq!(
            vgg19.style_taps,
            ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
        );
        assert_eq!(vgg19.style_layer_weights, [1.0; 5]);
        assert_eq!(vgg19.style_names, ["a", "a-2"]);
        assert_eq!(
            (vgg19.batch_size, vgg19.image_size, vgg19.lr, vgg19.seed),
            (4, 256, 1e-3, 42)
        );
        // 8 of 100 photos held out for validation; 2 epochs of 92 in batches of 4.
        assert_eq!((vgg19.val_data.clone(), vgg19.val_holdout), (None, 8));
        assert_eq!(vgg19.val_every, 1000);
        assert_eq!(vgg19.n_steps, 46);
        assert_eq!(
            (vgg19.checkpoint_every, vgg19.sample_every, vgg19.log_every),
            (1000, 1000, 10)
        );
        assert_eq!(vgg19.arch, "johnson");
        assert_eq!(vgg19.precision, "f32");
        assert_eq!(
            vgg19.loss_weights,
            PathBuf::from("weights/vgg19.safetensors")
        );
        assert_eq!(
            vgg19.checkpoint_path,
            PathBuf::from("out/model.checkpoint.safetensors")
        );
        vgg19.validate().unwrap();

        let vgg16 = Overrides {
            loss_net: Some(VggKind::Vgg16),
            loss_weights: Some(PathBuf::from("vgg16.pth")),
            loss_convention: Some(LossConvention::PytorchExamples),
            // A weight given wins over the convention's.
            tv_weight: Some(1.0),
            ..given_files()
        }
        .fresh(100)
        .unwrap();
        assert_eq!(
            (vgg16.content_weight, vgg16.style_weight, vgg16.tv_weight),
            (1e5, 1e10, 1.0)
        );
        assert_eq!(vgg16.loss_convention, LossConvention::PytorchExamples);
        assert_eq!(vgg16.content_taps, ["relu2_2"]);
        assert_eq!(
            vgg16.style_taps,
            ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
        );
    }

    #[test]
    fn a_fresh_run_takes_every_given_option() {
        let overrides = Overrides {
            style_taps: Some(vec![Tap::Relu1_1, Tap::Relu2_1]),
            batch_size: Some(2),
            epochs: Some(3),
            checkpoint_every: Some(7),
            checkpoint_dir: Some(PathBuf::from("ckpt")),
            precision: Some(Precision::Bf16),
            arch: Some("johnson-half".into()),
            ..given_files()
        };
        let config = overrides.fresh(10).unwrap();
        assert_eq!(config.style_taps, ["relu1_1", "relu2_1"]);
        // One weight per given style tap, and the sampling interval follows the checkpoints.
        assert_eq!(config.style_layer_weights, [1.0, 1.0]);
        assert_eq!((config.sample_every, config.val_every), (7, 7));
        // One of 10 photos held out: 4 batches of 2 per epoch.
        assert_eq!(config.n_steps, 3 * 4);
        assert_eq!(
            config.checkpoint_path,
            PathBuf::from("ckpt/model.checkpoint.safetensors")
        );
        assert_eq!(config.precision, "bf16");
        assert_eq!(config.arch, "johnson-half");
        let steps = Overrides {
            steps: Some(9),
            ..overrides.clone()
        };
        assert_eq!(steps.fresh(10).unwrap().n_steps, 9);
        // A validation folder of its own: no photo held out.
        let val = Overrides {
            val_data: Some(PathBuf::from("val")),
            val_every: Some(3),
            ..overrides
        }
        .fresh(10)
        .unwrap();
        assert_eq!(val.val_data, Some(PathBuf::from("val")));
        assert_eq!((val.val_holdout, val.val_every, val.n_steps), (0, 3, 15));
    }

    #[test]
    fn an_extending_run_adds_its_finetune_steps_and_a_faster_rate() {
        let extend = Overrides {
            extend: Some(PathBuf::from("builtin")),
            steps: Some(100),
            extend_finetune_steps: Some(20),
            ..given_files()
        };
        let config = extend.fresh(100).unwrap();
        assert_eq!(config.extend, Some(PathBuf::from("builtin")));
        assert_eq!((config.n_steps, config.frozen_steps()), (120, 100));
        assert_eq!(config.lr, DEFAULT_EXTEND_LR);
        let resumed = Overrides {
            steps: Some(200),
            ..Overrides::default()
        }
        .resumed(&config, 100)
        .unwrap();
        assert_eq!((resumed.n_steps, resumed.frozen_steps()), (220, 200));
        let with_arch = Overrides {
            arch: Some("johnson".into()),
            ..extend.clone()
        };
        assert!(with_arch
            .fresh(100)
            .unwrap_err()
            .to_string()
            .contains("--arch"));
        let finetune_alone = Overrides {
            extend: None,
            ..extend
        };
        assert!(finetune_alone.fresh(100).is_err());
    }

    #[test]
    fn a_fresh_run_refuses_what_it_cannot_run() {
        let vgg16 = Overrides {
            loss_net: Some(VggKind::Vgg16),
            ..given_files()
        };
        let message = vgg16.fresh(10).unwrap_err().to_string();
        assert!(message.contains("needs --loss-weights"), "{message}");
        let no_output = Overrides {
            output: None,
            ..given_files()
        };
        assert!(matches!(no_output.fresh(10), Err(Error::Flags(_))));
        let arch = Overrides {
            arch: Some("resnet".into()),
            ..given_files()
        };
        assert!(arch.fresh(10).is_err());
    }

    #[test]
    fn unchanged_options_pass_on_resume() {
        let saved = given_files().fresh(100).unwrap();
        let repeated = Overrides {
            loss_net: Some(VggKind::Vgg19),
            content_taps: Some(vec![Tap::Relu4_2]),
            batch_size: Some(4),
            lr: Some(1e-3),
            arch: Some("johnson".into()),
            seed: Some(42),
            ..given_files()
        };
        assert_eq!(repeated.resumed(&saved, 100).unwrap(), saved);
        assert_eq!(Overrides::default().resumed(&saved, 100).unwrap(), saved);
    }

    #[test]
    fn a_resumed_run_takes_output_run_length_logging_and_precision() {
        let saved = given_files().fresh(100).unwrap();
        let changes = Overrides {
            output: Some(PathBuf::from("branch/longer.safetensors")),
            steps: Some(500),
            precision: Some(Precision::Bf16),
            checkpoint_every: Some(50),
            sample_every: Some(25),
            log_every: Some(5),
            sample_image: Some(PathBuf::from("sample.jpg")),
            log_dir: Some(PathBuf::from("runs")),
            checkpoint_dir: Some(PathBuf::from("elsewhere")),
            val_every: Some(20),
            ..Overrides::default()
        };
        let config = changes.resumed(&saved, 100).unwrap();
        assert_eq!(config.n_steps, 500);
        assert_eq!(config.precision, "bf16");
        assert_eq!(
            (
                config.checkpoint_every,
                config.sample_every,
                config.log_every
            ),
            (50, 25, 5)
        );
        assert_eq!(config.sample_image, Some(PathBuf::from("sample.jpg")));
        assert_eq!(config.log_dir, Some(PathBuf::from("runs")));
        assert_eq!(config.val_every, 20);
        assert_eq!(config.output, PathBuf::from("branch/longer.safetensors"));
        assert_eq!(
            config.checkpoint_path,
            PathBuf::from("elsewhere/longer.checkpoint.safetensors")
        );
        // A new output without a checkpoint folder takes its checkpoint along.
        let branch = Overrides {
            output: Some(PathBuf::from("branch/longer.safetensors")),
            ..Overrides::default()
        };
        assert_eq!(
            branch.resumed(&saved, 100).unwrap().checkpoint_path,
            PathBuf::from("branch/longer.checkpoint.safetensors")
        );
        // Everything that shapes the math is the checkpoint's.
        let math = |c: &TrainConfig| {
            (
                c.content_weight,
                c.style_weight,
                c.batch_size,
                c.lr,
                c.seed,
                c.style_taps.clone(),
            )
        };
        assert_eq!(math(&config), math(&saved));
        // Epochs count over the photos now present less those held out, in the saved batch
        // size.
        let epochs = Overrides {
            epochs: Some(4),
            ..Overrides::default()
        };
        assert_eq!(epochs.resumed(&saved, 40).unwrap().n_steps, 32);
    }

    #[test]
    fn a_resumed_run_refuses_a_different_math_option() {
        let saved = given_files().fresh(100).unwrap();
        let cases = [
            (
                Overrides {
                    lr: Some(0.01),
                    ..Overrides::default()
                },
                "--lr",
            ),
            (
                Overrides {
                    loss_net: Some(VggKind::Vgg16),
                    ..Overrides::default()
                },
                "--loss-net",
            ),
            (
                Overrides {
                    style_taps: Some(vec![Tap::Relu1_1]),
                    ..Overrides::default()
                },
                "--style-layers",
            ),
            (
                Overrides {
                    batch_size: Some(8),
                    ..Overrides::default()
                },
                "--batch-size",
            ),
            (
                Overrides {
                    style_size: Some(512),
                    ..Overrides::default()
                },
                "--style-size",
            ),
            (
                Overrides {
                    style_images: vec![PathBuf::from("other.jpg")],
                    ..Overrides::default()
                },
                "--style",
            ),
            (
                Overrides {
                    loss_convention: Some(LossConvention::Lengstrom),
                    ..Overrides::default()
                },
                "--loss-convention",
            ),
            (
                Overrides {
                    tv_weight: Some(0.0),
                    ..Overrides::default()
                },
                "--tv-weight",
            ),
            (
                Overrides {
                    seed: Some(7),
                    ..Overrides::default()
                },
                "--seed",
            ),
            (
                Overrides {
                    data_dir: Some(PathBuf::from("other photos")),
                    ..Overrides::default()
                },
                "--data",
            ),
            (
                Overrides {
                    val_data: Some(PathBuf::from("val")),
                    ..Overrides::default()
                },
                "--val-data",
            ),
            (
                Overrides {
                    arch: Some("johnson-half".into()),
                    ..Overrides::default()
                },
                "--arch",
            ),
        ];
        for (overrides, flag) in cases {
            let message = overrides.resumed(&saved, 100).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("{flag} ")) && message.contains("differs"),
                "{message}"
            );
        }
    }

    #[test]
    fn saved_tap_spellings_compare_by_the_layer_they_name() {
        let mut saved = given_files().fresh(100).unwrap();
        saved.content_taps = vec!["relu04_2".into()];
        let same_layer = Overrides {
            content_taps: Some(vec![Tap::Relu4_2]),
            ..Overrides::default()
        };
        assert!(same_layer.resumed(&saved, 100).is_ok());
    }
}
