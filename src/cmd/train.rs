//! `atelier train`: train a style network from style images and a folder of photos.
//!
//! The command only speaks CLI: flags become `trainer::Overrides`, `trainer::prepare` applies
//! the recipe and checks every input before the first step (so a mistake costs seconds, not a
//! night), and `trainer::run` trains while this file shows progress. SIGINT/SIGTERM finish
//! the current step, save a checkpoint and exit 130/143 with the command that resumes; a
//! second signal exits at once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::ArgMatches;
use indicatif::ProgressBar;
use models::vgg::{Tap, VggKind};
use trainer::recipe::{
    DEFAULT_ARCH, DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT_EVERY, DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE,
    DEFAULT_LOG_EVERY, DEFAULT_LOSS_CONVENTION, DEFAULT_LOSS_NET, DEFAULT_LR, DEFAULT_SEED,
};
use trainer::{Checkpoint, Event, LossConvention, Outcome, Overrides};

use super::common::{progress_bar, RunArgs, STEPS};
use super::exit::{self, DuringWork};
use super::out;

#[derive(clap::Args)]
#[command(
    after_help = "Loss conventions: images enter the VGG as RGB in [0, 255] (the VGG applies its own \
preprocessing), Gram matrices are divided by c*h*w, squared errors are means. The default, \
--loss-convention balanced, divides each style layer's Gram error by the mean squares of its two \
Gram matrices (output and style) and \
each content layer's error by its target features' mean square (TV on [0, 1] pixels), so every \
layer starts near 1 and the weights mean the same for vgg16 and vgg19 and at any size. \
--loss-convention pytorch-examples (with --loss-net vgg16) and lengstrom (with vgg19) are those \
projects' unnormalised losses and recipes exactly; docs/training.md says how to carry weights \
between them.\n\n\
Example: atelier train --style starry.jpg --data train2014/ -o starry.safetensors --log-dir runs/starry"
)]
pub struct Args {
    /// Style image; repeat for a multi-style network (conditional instance norm), one style per
    /// batch in turn
    #[arg(
        long = "style",
        value_name = "IMAGE",
        required_unless_present = "resume"
    )]
    styles: Vec<PathBuf>,
    /// Folder of training photos, searched recursively (e.g. MS-COCO train2014)
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Where to write the trained model (.safetensors)
    #[arg(short, long, value_name = "MODEL", required_unless_present = "resume")]
    output: Option<PathBuf>,
    /// Overwrite an existing output model
    #[arg(long)]
    force: bool,
    /// Continue a run from its checkpoint; the checkpoint holds the whole configuration, so
    /// nothing else is needed. May change: -o (a new output branches the run, its checkpoint
    /// goes beside it and the old one is kept), --steps/--epochs, logging, sampling,
    /// validation cadence, the checkpoint cadence and folder, --precision. Flags that change
    /// what is trained (losses, layers, data, batch, crops, learning rate, seed, network), if
    /// given, must match
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,

    /// Loss network: vgg16 (torchvision weights, pytorch/examples recipe) or vgg19 (Caffe
    /// weights from `make vgg`)
    #[arg(long, value_name = "NET", default_value_t = DEFAULT_LOSS_NET)]
    loss_net: VggKind,
    /// Loss-network weights in torchvision layout (.safetensors or .pth). Default for vgg19:
    /// weights/vgg19.safetensors, made by `make vgg`; vgg16 needs this flag
    #[arg(long, value_name = "FILE")]
    loss_weights: Option<PathBuf>,
    /// Comma-separated VGG layers for the content loss. Default: relu2_2 for vgg16, relu4_2
    /// for vgg19
    #[arg(long, value_name = "LAYERS", value_delimiter = ',')]
    content_layers: Option<Vec<Tap>>,
    /// Comma-separated VGG layers for the style loss. Default: relu1_2,relu2_2,relu3_3,relu4_3
    /// for vgg16, relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 for vgg19
    #[arg(long, value_name = "LAYERS", value_delimiter = ',')]
    style_layers: Option<Vec<Tap>>,
    /// Comma-separated weight per style layer. Default: 1 each
    #[arg(long, value_name = "WEIGHTS", value_delimiter = ',')]
    style_layer_weights: Option<Vec<f64>>,
    /// How the loss terms are scaled: balanced (each term relative to the scale of what it
    /// compares), pytorch-examples or lengstrom (unnormalised, with those projects' weights as
    /// defaults)
    #[arg(long, value_name = "CONVENTION", default_value_t = DEFAULT_LOSS_CONVENTION)]
    loss_convention: LossConvention,
    /// Weight of the content loss. Default: 1 (balanced), 1e5 (pytorch-examples), 7.5
    /// (lengstrom)
    #[arg(long, value_name = "W")]
    content_weight: Option<f64>,
    /// Weight of the style loss. Default: 10 (balanced), 1e10 (pytorch-examples), 100
    /// (lengstrom)
    #[arg(long, value_name = "W")]
    style_weight: Option<f64>,
    /// Weight of the total-variation loss. Default: 5 (balanced), 0 (pytorch-examples), 200
    /// (lengstrom)
    #[arg(long, value_name = "W")]
    tv_weight: Option<f64>,

    /// Number of optimizer steps (instead of --epochs)
    #[arg(long, value_name = "N", conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Number of passes over the photos
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EPOCHS)]
    epochs: u64,
    /// Photos per step
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Side of the square random crops trained on, in pixels
    #[arg(long, value_name = "PX", default_value_t = DEFAULT_IMAGE_SIZE)]
    image_size: i64,
    /// Resize style images so their shorter side is this, aspect kept (default: as they are)
    #[arg(long, value_name = "PX")]
    style_size: Option<i64>,
    /// Adam learning rate
    #[arg(long, value_name = "LR", default_value_t = DEFAULT_LR)]
    lr: f64,
    /// Step decay: multiply the learning rate by this every --lr-decay-every steps
    #[arg(long, value_name = "FACTOR", requires = "lr_decay_every")]
    lr_decay: Option<f64>,
    /// Steps between learning-rate decays
    #[arg(long, value_name = "N")]
    lr_decay_every: Option<u64>,
    /// Network architecture: johnson, johnson-half or multistyle26 (the arbitrary-style network
    /// comes trained, with Magenta's weights, and is not trained here)
    #[arg(long, value_name = "ARCH", default_value = DEFAULT_ARCH, value_parser = arch)]
    arch: String,
    /// Add the --style images as new styles to this multi-style model (`builtin`: the
    /// built-in 26-style network): new conditional-norm rows start as the mean of its rows and
    /// only they train, everything else frozen, so its own styles stay bit-identical (Dumoulin
    /// et al. 2017). The output holds its styles and then the new ones. Learning rate 1e-2
    /// unless --lr is given
    #[arg(long, value_name = "MODEL")]
    extend: Option<PathBuf>,
    /// With --extend: after the --steps that train only the new rows, this many more steps
    /// train every weight on the new styles (the old styles then change)
    #[arg(long, value_name = "N", requires = "extend")]
    extend_finetune_steps: Option<u64>,
    /// Seed of the weight initialisation, photo order and crops
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    seed: u64,

    #[command(flatten)]
    run: RunArgs,

    /// Steps between checkpoints
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: u64,
    /// Folder for the checkpoint (default: beside the output model)
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Image stylized and written (as PNG, and to TensorBoard) every --sample-every steps
    #[arg(long, value_name = "IMAGE")]
    sample: Option<PathBuf>,
    /// Steps between samples (default: --checkpoint-every)
    #[arg(long, value_name = "N")]
    sample_every: Option<u64>,
    /// Validation photo, or folder of them (at most 8, evenly spaced, are used; any that is
    /// also in --data is not trained on). Default: one photo in ten of --data, at most 8, held
    /// out and never trained on (none with under 10 photos)
    #[arg(long, value_name = "PATH")]
    val_data: Option<PathBuf>,
    /// Steps between validations: the validation photos stylized and measured with the
    /// `atelier eval` yardstick, to the progress line, the JSON log (`val`) and TensorBoard
    /// (`val/*` scalars and a grid per style) [default: --checkpoint-every]
    #[arg(long, value_name = "N")]
    val_every: Option<u64>,
    /// Steps between reads of the losses for the progress line and logs
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_EVERY)]
    log_every: u64,
    /// Folder for TensorBoard event files (scalars and samples)
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Append one JSON object per logged step to this file
    #[arg(long, value_name = "FILE")]
    log_json: Option<PathBuf>,
    /// No progress bar or messages (errors still go to stderr)
    #[arg(short, long)]
    quiet: bool,
}

/// `--arch`: a preset with per-style norms (the arbitrary network's norms come from a style
/// predictor that `train` does not train).
fn arch(name: &str) -> anyhow::Result<String> {
    let preset: models::spec::Preset = name.parse()?;
    anyhow::ensure!(
        preset != models::spec::Preset::Arbitrary,
        "the arbitrary-style network is not trained by `atelier train` (use --arch johnson, johnson-half or multistyle26)"
    );
    Ok(preset.name().to_string())
}

/// Which of `train`'s flags were given on the command line: a flag left at its default is no
/// override, so a resumed run keeps the checkpoint's value.
pub struct Given<'a>(Option<&'a ArgMatches>);

impl<'a> From<Option<&'a ArgMatches>> for Given<'a> {
    fn from(matches: Option<&'a ArgMatches>) -> Self {
        Given(matches)
    }
}

impl Given<'_> {
    fn flag(&self, id: &str) -> bool {
        self.0.and_then(|matches| matches.value_source(id)) == Some(ValueSource::CommandLine)
    }
}

impl Args {
    /// The flags as the trainer's overrides: each given flag, `None` for the others.
    fn overrides(&self, given: &Given) -> Overrides {
        fn pick<T: Clone>(given: bool, value: &T) -> Option<T> {
            given.then(|| value.clone())
        }
        Overrides {
            style_images: self.styles.clone(),
            data_dir: self.data.clone(),
            output: self.output.clone(),
            loss_net: pick(given.flag("loss_net"), &self.loss_net),
            loss_weights: self.loss_weights.clone(),
            content_taps: self.content_layers.clone(),
            style_taps: self.style_layers.clone(),
            style_layer_weights: self.style_layer_weights.clone(),
            loss_convention: pick(given.flag("loss_convention"), &self.loss_convention),
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            steps: self.steps,
            epochs: pick(given.flag("epochs"), &self.epochs),
            batch_size: pick(given.flag("batch_size"), &self.batch_size),
            image_size: pick(given.flag("image_size"), &self.image_size),
            style_size: self.style_size,
            lr: pick(given.flag("lr"), &self.lr),
            lr_decay: self.lr_decay,
            lr_decay_every: self.lr_decay_every,
            arch: pick(given.flag("arch"), &self.arch),
            seed: pick(given.flag("seed"), &self.seed),
            precision: pick(given.flag("precision"), &self.run.precision),
            checkpoint_every: pick(given.flag("checkpoint_every"), &self.checkpoint_every),
            checkpoint_dir: self.checkpoint_dir.clone(),
            sample_image: self.sample.clone(),
            sample_every: self.sample_every,
            log_every: pick(given.flag("log_every"), &self.log_every),
            log_dir: self.log_dir.clone(),
            val_data: self.val_data.clone(),
            val_every: self.val_every,
            extend: self.extend.clone(),
            extend_finetune_steps: self.extend_finetune_steps,
        }
    }
}

pub fn run(args: Args, given: &Given) -> anyhow::Result<ExitCode> {
    // Every step allocates and frees activations of tens of MiB: from the heap instead of fresh
    // zeroed mmaps, a fifth less time per step at 256x256 batch 4 on the CPU (BENCHMARKS.md).
    infer::tune_allocator();
    if let Some(n) = args.run.threads {
        tch::set_num_threads(n as i32);
    }
    let device = args.run.device()?;
    let resume = match &args.resume {
        Some(path) => Some(
            Checkpoint::load(path)
                .with_context(|| format!("cannot resume from {}", path.display()))?,
        ),
        None => None,
    };
    let resumed = resume.is_some();
    // The model to extend (not needed on resume: the checkpoint holds every weight).
    let base = match (&args.extend, resumed) {
        (Some(path), false) => {
            let source = (path != Path::new(infer::builtin::NAME) && path != Path::new("builtin"))
                .then_some(path.as_path());
            let loaded = infer::load_model(source, tch::Device::Cpu)
                .with_context(|| format!("cannot extend {}", path.display()))?;
            Some(loaded.model)
        }
        _ => None,
    };
    let trainer::Prepared {
        config,
        precision,
        mut trainer,
        mut stream,
        sample,
        n_photos,
        photo_warnings,
        validation,
        validation_photos,
        validation_note,
    } = trainer::prepare(trainer::Launch {
        overrides: args.overrides(given),
        resume,
        force: args.force,
        device,
        threads: args.run.threads,
        base,
    })?;
    if let Some(warning) = models::precision::bf16_speed_warning(precision, device) {
        eprintln!("atelier: warning: {warning}");
    }
    let mut json_log = match &args.log_json {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(resumed)
                .write(true)
                .truncate(!resumed)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };

    // From here on, a signal finishes the step, saves and stops; a second one exits at once.
    let signal = super::common::stop_on_signals()?;

    let bar = progress_bar(!args.quiet, Some(config.n_steps), STEPS);
    let say = |bar: &ProgressBar, line: String| {
        if !args.quiet {
            bar.println(line);
        }
    };
    for warning in &photo_warnings {
        say(&bar, format!("warning: {warning}"));
    }
    match &validation_note {
        Some(note) => say(&bar, format!("note: {note}")),
        None => say(
            &bar,
            format!(
                "validating every {} steps on {} photo{} never trained on: {}",
                config.val_every,
                validation_photos.len(),
                if validation_photos.len() == 1 {
                    ""
                } else {
                    "s"
                },
                validation_photos
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
    say(
        &bar,
        format!(
            "training {} ({}, {} style{}{}) on {n_photos} photos for {} steps on {device:?} in {precision}",
            config.output.display(),
            config.arch,
            config.style_names.len(),
            if config.style_names.len() == 1 { "" } else { "s" },
            match &config.extend {
                Some(base) => format!(
                    " added to the {} of {}, only their rows trained for {} steps",
                    config.extend_base_styles.len(),
                    base.display(),
                    config.frozen_steps()
                ),
                None => String::new(),
            },
            config.n_steps
        ),
    );
    let mut log_error = None;
    // The latest validation, kept on the progress line between validations.
    let mut last_val = String::new();
    let outcome = trainer::run(
        &mut trainer,
        &mut stream,
        sample.as_ref(),
        validation.as_ref(),
        &signal,
        &mut |event| match event {
            Event::Started { step, .. } => bar.set_position(step),
            Event::Stepped { step } => bar.set_position(step),
            Event::Logged(report) => {
                let l = &report.losses;
                if let Some(val) = &report.validation {
                    last_val = format!(
                        "  val@{} content {:.3e} style {:.3e}",
                        report.step, val.content, val.style
                    );
                }
                bar.set_message(format!(
                    "{:.1} img/s  content {:.3e}  style {:.3e}  tv {:.3e}  total {:.3e}{last_val}",
                    report.images_per_sec, l.content, l.style, l.tv, l.total
                ));
                if let Some(file) = &mut json_log {
                    if let Err(e) = writeln!(file, "{}", report.to_json()) {
                        log_error.get_or_insert(e);
                    }
                }
            }
            Event::Checkpointed { step, path } => {
                say(&bar, format!("step {step}: checkpoint {}", path.display()))
            }
            Event::Sampled { step, paths } => {
                for path in paths {
                    say(&bar, format!("step {step}: sample {}", path.display()));
                }
            }
            Event::Warning(line) => say(&bar, format!("warning: {line}")),
        },
    );
    bar.finish_and_clear();
    if let Some(e) = log_error {
        eprintln!("atelier: warning: cannot write the JSON log: {e}");
    }
    match outcome {
        Ok(Outcome::Finished) => {
            if !args.quiet {
                out::line(format_args!(
                    "wrote {} after {} steps",
                    config.output.display(),
                    trainer.step
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Outcome::Interrupted {
            signal,
            step,
            checkpoint,
        }) => {
            eprintln!(
                "atelier: stopped at step {step}; checkpoint saved to {}",
                checkpoint.display()
            );
            eprintln!(
                "resume with: atelier train --resume {}",
                shell_quote(&checkpoint)
            );
            Ok(ExitCode::from((128 + signal) as u8))
        }
        // The message names the term, and the last good checkpoint is untouched.
        Err(e @ trainer::Error::NonFinite { .. }) => {
            eprintln!("atelier: error: {e}");
            Ok(ExitCode::from(exit::FAILED))
        }
        Err(e) => Err(e).during_work(),
    }
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// The overrides `atelier train ARGS...` passes to the trainer.
    fn overrides(args: &[&str]) -> Overrides {
        let argv = ["atelier", "train"].iter().chain(args);
        let matches = crate::cmd::Cli::command().get_matches_from(argv);
        let train = matches.subcommand_matches("train").unwrap();
        let parsed = Args::from_arg_matches(train).unwrap();
        parsed.overrides(&Given::from(Some(train)))
    }

    #[test]
    fn flags_left_at_their_default_are_no_overrides() {
        let none = overrides(&["--resume", "run.ckpt"]);
        assert_eq!(none, Overrides::default());
    }

    #[test]
    fn every_flag_given_becomes_its_override() {
        let all = overrides(&[
            "--style=a.jpg",
            "--data=photos",
            "--output=m.safetensors",
            "--loss-net=vgg16",
            "--loss-weights=w.pth",
            "--content-layers=relu2_2",
            "--style-layers=relu1_2,relu2_2",
            "--style-layer-weights=1,2",
            "--loss-convention=pytorch-examples",
            "--content-weight=1",
            "--style-weight=2",
            "--tv-weight=3",
            "--epochs=5",
            "--batch-size=2",
            "--image-size=128",
            "--style-size=64",
            "--lr=0.5",
            "--lr-decay=0.9",
            "--lr-decay-every=10",
            "--arch=johnson-half",
            "--seed=7",
            "--precision=bf16",
            "--checkpoint-every=3",
            "--checkpoint-dir=ckpt",
            "--sample=s.png",
            "--sample-every=4",
            "--log-every=2",
            "--log-dir=logs",
            "--val-data=val",
            "--val-every=6",
            "--extend=builtin",
            "--extend-finetune-steps=5",
        ]);
        let expected = Overrides {
            style_images: vec![PathBuf::from("a.jpg")],
            data_dir: Some(PathBuf::from("photos")),
            output: Some(PathBuf::from("m.safetensors")),
            loss_net: Some(VggKind::Vgg16),
            loss_weights: Some(PathBuf::from("w.pth")),
            content_taps: Some(vec![Tap::Relu2_2]),
            style_taps: Some(vec![Tap::Relu1_2, Tap::Relu2_2]),
            style_layer_weights: Some(vec![1.0, 2.0]),
            loss_convention: Some(LossConvention::PytorchExamples),
            content_weight: Some(1.0),
            style_weight: Some(2.0),
            tv_weight: Some(3.0),
            steps: None,
            epochs: Some(5),
            batch_size: Some(2),
            image_size: Some(128),
            style_size: Some(64),
            lr: Some(0.5),
            lr_decay: Some(0.9),
            lr_decay_every: Some(10),
            arch: Some("johnson-half".into()),
            seed: Some(7),
            precision: Some(models::Precision::Bf16),
            checkpoint_every: Some(3),
            checkpoint_dir: Some(PathBuf::from("ckpt")),
            sample_image: Some(PathBuf::from("s.png")),
            sample_every: Some(4),
            log_every: Some(2),
            log_dir: Some(PathBuf::from("logs")),
            val_data: Some(PathBuf::from("val")),
            val_every: Some(6),
            extend: Some(PathBuf::from("builtin")),
            extend_finetune_steps: Some(5),
        };
        assert_eq!(all, expected);
        // A value equal to the default still counts as given.
        assert_eq!(overrides(&["--resume=r", "--seed=42"]).seed, Some(42));
        assert_eq!(overrides(&["--resume=r", "--steps=9"]).steps, Some(9));
    }

    #[test]
    fn bad_layers_nets_and_archs_are_refused_while_parsing() {
        for bad in [
            ["--content-layers", "relu9_9"],
            ["--loss-net", "vgg11"],
            ["--loss-convention", "johnson"],
            ["--arch", "resnet"],
            ["--arch", "arbitrary"],
            ["--precision", "f8"],
            ["--device", "tpu"],
            ["--threads", "0"],
        ] {
            let argv = ["atelier", "train", "--resume", "r"].into_iter().chain(bad);
            let error = crate::cmd::Cli::command()
                .try_get_matches_from(argv)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        }
    }
}
