//! `atelier train`: train a style network from style images and a folder of photos.
//!
//! Everything that can be wrong with the inputs (style images, loss-network weights, photo
//! folder, output, sample image, log files) is checked before the first step, so a mistake
//! costs seconds, not a night. SIGINT/SIGTERM finish the current step, save a checkpoint and
//! exit 130/143 with the command that resumes; a second signal exits at once.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use models::precision::parse_device;
use models::vgg::VggKind;
use models::Precision;
use trainer::{Checkpoint, Event, Outcome, TrainConfig, Trainer};

/// Where `make vgg` puts the VGG-19 weights.
const DEFAULT_VGG19_WEIGHTS: &str = "weights/vgg19.safetensors";
const DEFAULT_EPOCHS: u64 = 2;

#[derive(clap::Args)]
#[command(
    after_help = "Loss conventions: images enter the VGG as RGB in [0, 255] (the VGG applies its own \
preprocessing), Gram matrices are divided by c*h*w, squared errors are means, so pytorch/examples \
weights carry over (content 1e5, style 1e10 with --loss-net vgg16).\n\n\
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
    /// nothing else is needed (--steps/--epochs extend the run; other training flags, if
    /// given, must match)
    #[arg(long, value_name = "CHECKPOINT")]
    resume: Option<PathBuf>,

    /// Loss network: vgg16 (torchvision weights, pytorch/examples recipe) or vgg19 (Caffe
    /// weights from `make vgg`) [default: vgg19]
    #[arg(long, value_name = "NET")]
    loss_net: Option<String>,
    /// Loss-network weights in torchvision layout (.safetensors or .pth) [default:
    /// weights/vgg19.safetensors, made by `make vgg`]
    #[arg(long, value_name = "FILE")]
    loss_weights: Option<PathBuf>,
    /// Comma-separated VGG layers for the content loss [default: relu2_2 for vgg16, relu4_2
    /// for vgg19]
    #[arg(long, value_name = "LAYERS", value_delimiter = ',')]
    content_layers: Option<Vec<String>>,
    /// Comma-separated VGG layers for the style loss [default: relu1_2,relu2_2,relu3_3,relu4_3
    /// for vgg16, relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 for vgg19]
    #[arg(long, value_name = "LAYERS", value_delimiter = ',')]
    style_layers: Option<Vec<String>>,
    /// Comma-separated weight per style layer [default: 1 each]
    #[arg(long, value_name = "WEIGHTS", value_delimiter = ',')]
    style_layer_weights: Option<Vec<f64>>,
    /// Weight of the content loss [default: 1e5 for vgg16, 7.5 for vgg19]
    #[arg(long, value_name = "W")]
    content_weight: Option<f64>,
    /// Weight of the style loss [default: 1e10 for vgg16, 100 for vgg19]
    #[arg(long, value_name = "W")]
    style_weight: Option<f64>,
    /// Weight of the total-variation loss [default: 0 for vgg16, 200 for vgg19]
    #[arg(long, value_name = "W")]
    tv_weight: Option<f64>,

    /// Number of optimizer steps (instead of --epochs)
    #[arg(long, value_name = "N", conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Number of passes over the photos [default: 2]
    #[arg(long, value_name = "N")]
    epochs: Option<u64>,
    /// Photos per step [default: 4]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Side of the square random crops trained on, in pixels [default: 256]
    #[arg(long, value_name = "PX")]
    image_size: Option<i64>,
    /// Resize style images so their shorter side is this, aspect kept [default: as they are]
    #[arg(long, value_name = "PX")]
    style_size: Option<i64>,
    /// Adam learning rate [default: 1e-3]
    #[arg(long, value_name = "LR")]
    lr: Option<f64>,
    /// Step decay: multiply the learning rate by this every --lr-decay-every steps
    #[arg(long, value_name = "FACTOR", requires = "lr_decay_every")]
    lr_decay: Option<f64>,
    /// Steps between learning-rate decays
    #[arg(long, value_name = "N")]
    lr_decay_every: Option<u64>,
    /// Network architecture: johnson, johnson-half, multistyle26 [default: johnson]
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Seed of the weight initialisation, photo order and crops [default: 42]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// auto, cpu, cuda or cuda:N
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    device: String,
    /// f32, or mixed precision: bf16, f16 (CUDA only, with dynamic loss scaling) [default: f32]
    #[arg(long, value_name = "PRECISION")]
    precision: Option<String>,
    /// CPU threads for the network (and photo decoding) [default: all cores]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Steps between checkpoints [default: 1000]
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u64>,
    /// Folder for the checkpoint [default: beside the output model]
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Image stylized and written (as PNG, and to TensorBoard) every --sample-every steps
    #[arg(long, value_name = "IMAGE")]
    sample: Option<PathBuf>,
    /// Steps between samples [default: --checkpoint-every]
    #[arg(long, value_name = "N")]
    sample_every: Option<u64>,
    /// Steps between reads of the losses for the progress line and logs [default: 10]
    #[arg(long, value_name = "N")]
    log_every: Option<u64>,
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Every step allocates and frees activations of tens of MiB: from the heap instead of fresh
    // zeroed mmaps, a fifth less time per step at 256x256 batch 4 on the CPU (BENCHMARKS.md).
    infer::tune_allocator();
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        tch::set_num_threads(n as i32);
    }
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;

    // The configuration: from the flags, or from the checkpoint (with --steps/--epochs).
    let checkpoint = match &args.resume {
        Some(path) => Some(
            Checkpoint::load(path)
                .with_context(|| format!("cannot resume from {}", path.display()))?,
        ),
        None => None,
    };
    let photos = {
        let data = match (&checkpoint, &args.data) {
            (Some(c), _) => c.config.data_dir.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => bail!("--data is required"),
        };
        datasets::find_photos(&data)?
    };
    let config = match &checkpoint {
        Some(c) => resumed_config(&args, &c.config, photos.files.len())?,
        None => fresh_config(&args, photos.files.len())?,
    };
    config.validate()?;
    let precision: Precision = config.precision.parse().map_err(anyhow::Error::msg)?;
    precision.check_device(device).map_err(anyhow::Error::msg)?;
    if let Some(warning) = models::precision::bf16_speed_warning(precision, device) {
        eprintln!("atelier: warning: {warning}");
    }

    check_output(&config.output, args.force)?;
    if let Some(dir) = config.checkpoint_path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    check_writable(&config.checkpoint_path)?;
    let style_images = config
        .style_images
        .iter()
        .map(|p| trainer::load_style_image(p, config.style_size).context("style image"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sample = match &config.sample_image {
        Some(path) => Some(trainer::load_style_image(path, None).context("sample image")?),
        None => None,
    };
    if config.loss_weights == Path::new(DEFAULT_VGG19_WEIGHTS) && !config.loss_weights.exists() {
        bail!("{DEFAULT_VGG19_WEIGHTS} is missing: run `make vgg` to fetch the VGG-19 loss network, or give --loss-weights");
    }
    let vgg = trainer::train::load_loss_net(&config, device).context("loss network")?;
    let mut json_log = match &args.log_json {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(checkpoint.is_some())
                .write(true)
                .truncate(checkpoint.is_none())
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };
    if let Some(dir) = &config.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let n_threads = args
        .threads
        .unwrap_or_else(|| datasets::StreamConfig::default().n_threads)
        .clamp(1, 8);
    let stream_config = datasets::StreamConfig {
        image_size: config.image_size,
        batch_size: config.batch_size,
        seed: config.seed,
        n_threads,
        ..Default::default()
    };
    let n_photos = photos.files.len();
    let mut stream = match &checkpoint {
        Some(c) => datasets::PhotoStream::resume(stream_config, photos.files, c.data_state)?,
        None => datasets::PhotoStream::new(stream_config, photos.files)?,
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mut trainer = match &checkpoint {
        Some(c) => {
            Trainer::from_checkpoint(config.clone(), c, &style_images, vgg, device, precision)?
        }
        None => Trainer::new(config.clone(), &style_images, vgg, device, precision)?,
    };
    drop(checkpoint);

    // From here on, a signal finishes the step, saves and stops; a second one exits at once.
    let signal = Arc::new(AtomicUsize::new(0));
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&signalled))?;
        signal_hook::flag::register(sig, Arc::clone(&signalled))?;
        signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
    }

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(config.n_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {elapsed_precise} ETA {eta_precise}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let say = |bar: &ProgressBar, line: String| {
        if !args.quiet {
            bar.println(line);
        }
    };
    for warning in &photos.warnings {
        say(&bar, format!("warning: {warning}"));
    }
    say(
        &bar,
        format!(
            "training {} ({}, {} style{}) on {n_photos} photos for {} steps on {device:?} in {precision}",
            config.output.display(),
            config.arch,
            config.style_names.len(),
            if config.style_names.len() == 1 { "" } else { "s" },
            config.n_steps
        ),
    );
    let mut log_error = None;
    let outcome = trainer::run(
        &mut trainer,
        &mut stream,
        sample.as_ref(),
        &signal,
        &mut |event| match event {
            Event::Started { step, .. } => bar.set_position(step),
            Event::Stepped { step } => bar.set_position(step),
            Event::Logged(report) => {
                let l = &report.losses;
                bar.set_message(format!(
                    "{:.1} img/s  content {:.3e}  style {:.3e}  tv {:.3e}  total {:.3e}",
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
                println!(
                    "wrote {} after {} steps",
                    config.output.display(),
                    trainer.step
                );
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
        // Long work was done: not a usage error. The message names the term, and the last
        // good checkpoint is untouched.
        Err(e @ trainer::Error::NonFinite { .. }) => {
            eprintln!("atelier: error: {e}");
            Ok(ExitCode::from(super::exit::PARTIAL))
        }
        Err(e) => Err(e.into()),
    }
}

/// Defaults, overridden by the flags given.
fn fresh_config(args: &Args, n_photos: usize) -> anyhow::Result<TrainConfig> {
    let (Some(data), Some(output)) = (&args.data, &args.output) else {
        bail!("--style, --data and --output are required");
    };
    let loss_net = args.loss_net.clone().unwrap_or_else(|| "vgg19".to_string());
    let kind: VggKind = loss_net.parse()?;
    // Published recipes whose loss conventions equal ours (0-255 inputs, Gram / (c*h*w), mean
    // squared errors): pytorch/examples for VGG-16, lengstrom/fast-style-transfer for VGG-19.
    let (content_weight, style_weight, tv_weight) = match kind {
        VggKind::Vgg16 => (1e5, 1e10, 0.0),
        VggKind::Vgg19 => (7.5, 100.0, 200.0),
    };
    let taps =
        |taps: Vec<models::vgg::Tap>| taps.iter().map(ToString::to_string).collect::<Vec<_>>();
    let style_taps = args
        .style_layers
        .clone()
        .unwrap_or_else(|| taps(kind.default_style_taps()));
    let batch_size = args.batch_size.unwrap_or(4);
    let checkpoint_every = args.checkpoint_every.unwrap_or(1000);
    let config = TrainConfig {
        style_names: trainer::config::style_names(&args.styles),
        style_images: args.styles.clone(),
        data_dir: data.clone(),
        output: output.clone(),
        checkpoint_path: trainer::checkpoint::default_path(output, args.checkpoint_dir.as_deref()),
        loss_weights: args
            .loss_weights
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_VGG19_WEIGHTS)),
        content_taps: args
            .content_layers
            .clone()
            .unwrap_or_else(|| taps(kind.default_content_taps())),
        style_layer_weights: args
            .style_layer_weights
            .clone()
            .unwrap_or_else(|| vec![1.0; style_taps.len()]),
        style_taps,
        loss_net,
        arch: args.arch.clone().unwrap_or_else(|| "johnson".to_string()),
        n_steps: n_steps(args, n_photos, batch_size),
        batch_size,
        image_size: args.image_size.unwrap_or(256),
        style_size: args.style_size,
        content_weight: args.content_weight.unwrap_or(content_weight),
        style_weight: args.style_weight.unwrap_or(style_weight),
        tv_weight: args.tv_weight.unwrap_or(tv_weight),
        lr: args.lr.unwrap_or(1e-3),
        lr_decay: args.lr_decay.unwrap_or(1.0),
        lr_decay_every: args.lr_decay_every,
        seed: args.seed.unwrap_or(42),
        precision: args.precision.clone().unwrap_or_else(|| "f32".to_string()),
        checkpoint_every,
        log_every: args.log_every.unwrap_or(10),
        sample_image: args.sample.clone(),
        sample_every: args.sample_every.unwrap_or(checkpoint_every),
        log_dir: args.log_dir.clone(),
    };
    if kind == VggKind::Vgg16 && args.loss_weights.is_none() {
        bail!("--loss-net vgg16 needs --loss-weights (torchvision's VGG-16 weights as .safetensors or .pth)");
    }
    models::NetSpec::preset(&config.arch)?;
    Ok(config)
}

fn n_steps(args: &Args, n_photos: usize, batch_size: usize) -> u64 {
    // The stream drops each epoch's last incomplete batch.
    let per_epoch = (n_photos / batch_size.max(1)).max(1) as u64;
    args.steps
        .unwrap_or_else(|| args.epochs.unwrap_or(DEFAULT_EPOCHS) * per_epoch)
}

/// The checkpoint's configuration. Run-length, logging and device flags may change; training
/// flags, if given, must agree with it (a resumed run must be the same run).
fn resumed_config(
    args: &Args,
    saved: &TrainConfig,
    n_photos: usize,
) -> anyhow::Result<TrainConfig> {
    let mut config = saved.clone();
    fn same<T: PartialEq + std::fmt::Debug>(
        flag: &str,
        given: Option<T>,
        saved: T,
    ) -> anyhow::Result<()> {
        match given {
            Some(value) if value != saved => bail!(
                "{flag} {value:?} differs from the checkpoint's {saved:?}; a resumed run keeps its configuration"
            ),
            _ => Ok(()),
        }
    }
    same(
        "--style",
        (!args.styles.is_empty()).then(|| args.styles.clone()),
        saved.style_images.clone(),
    )?;
    same("--data", args.data.clone(), saved.data_dir.clone())?;
    same("--output", args.output.clone(), saved.output.clone())?;
    same("--loss-net", args.loss_net.clone(), saved.loss_net.clone())?;
    same(
        "--loss-weights",
        args.loss_weights.clone(),
        saved.loss_weights.clone(),
    )?;
    same(
        "--content-layers",
        args.content_layers.clone(),
        saved.content_taps.clone(),
    )?;
    same(
        "--style-layers",
        args.style_layers.clone(),
        saved.style_taps.clone(),
    )?;
    same(
        "--style-layer-weights",
        args.style_layer_weights.clone(),
        saved.style_layer_weights.clone(),
    )?;
    same(
        "--content-weight",
        args.content_weight,
        saved.content_weight,
    )?;
    same("--style-weight", args.style_weight, saved.style_weight)?;
    same("--tv-weight", args.tv_weight, saved.tv_weight)?;
    same("--batch-size", args.batch_size, saved.batch_size)?;
    same("--image-size", args.image_size, saved.image_size)?;
    same("--style-size", args.style_size.map(Some), saved.style_size)?;
    same("--lr", args.lr, saved.lr)?;
    same("--lr-decay", args.lr_decay, saved.lr_decay)?;
    same(
        "--lr-decay-every",
        args.lr_decay_every.map(Some),
        saved.lr_decay_every,
    )?;
    same("--arch", args.arch.clone(), saved.arch.clone())?;
    same("--seed", args.seed, saved.seed)?;
    if args.steps.is_some() || args.epochs.is_some() {
        config.n_steps = n_steps(args, n_photos, config.batch_size);
    }
    if let Some(precision) = &args.precision {
        config.precision = precision.clone();
    }
    if let Some(n) = args.checkpoint_every {
        config.checkpoint_every = n;
    }
    if let Some(n) = args.sample_every {
        config.sample_every = n;
    }
    if let Some(n) = args.log_every {
        config.log_every = n;
    }
    if args.sample.is_some() {
        config.sample_image = args.sample.clone();
    }
    if args.log_dir.is_some() {
        config.log_dir = args.log_dir.clone();
    }
    if let Some(dir) = &args.checkpoint_dir {
        config.checkpoint_path = trainer::checkpoint::default_path(&config.output, Some(dir));
    }
    Ok(config)
}

/// The output must not exist (unless --force) and its folder must take a new file.
fn check_output(output: &Path, force: bool) -> anyhow::Result<()> {
    if output.exists() && !force {
        bail!(
            "{} already exists (use --force to overwrite it)",
            output.display()
        );
    }
    check_writable(output)
}

/// Creates and removes a temporary sibling of `path`: proves the folder exists and takes files.
fn check_writable(path: &Path) -> anyhow::Result<()> {
    let probe = models::file::temporary_sibling(path);
    File::create(&probe).with_context(|| format!("cannot write beside {}", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
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
