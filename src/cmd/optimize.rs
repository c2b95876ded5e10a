//! `atelier optimize`: style transfer by optimization (Gatys et al. 2016) — no network, the
//! pixels themselves are optimised through the VGG, coarse to fine.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use infer::{Finish, OutputFormat, StyleSource};
use models::{Precision, Tap, Vgg, VggKind};
use tch::Device;

use super::common::{at_least_one, read_picture, DeviceArg, MaxPixelsArg};
use super::exit::DuringWork;
use super::out;
use trainer::lbfgs::LineSearch;
use trainer::optimize::{DynamicImage, Event, Init, Method, OptimizeConfig, Scale, StyleImage};

/// The VGG-19 weights `make vgg` writes.
pub const DEFAULT_VGG19_WEIGHTS: &str = "weights/vgg19.safetensors";

/// The longer side of the result when neither --size nor --sizes is given: the photo's, at most
/// this.
const DEFAULT_MAX_SIZE: u32 = 512;
/// The automatic schedule halves the size while the half is at least this.
const COARSEST: u32 = 192;
/// Iterations at the coarsest scale and at each finer one (automatic schedule): the coarse
/// scale lays out the strokes, the finer ones only refine them (about 2 minutes for a 451x300 photo
/// on 2 idle cores; see README).
const DEFAULT_COARSE_ITERATIONS: u64 = 150;
const DEFAULT_FINE_ITERATIONS: u64 = 50;

/// The device and thread options of `optimize` and `eval`: `RunArgs` without a precision, since
/// both run the VGG in f32 (the losses are sums of many small terms).
#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Where the VGG runs: auto (CUDA if present), cpu, cuda or cuda:N
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceArg,
    /// CPU threads (default: all cores)
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub max_pixels: MaxPixelsArg,
}

impl RuntimeArgs {
    /// Sets the thread count and returns the device.
    pub fn apply(&self) -> anyhow::Result<Device> {
        if let Some(n) = self.threads {
            tch::set_num_threads(n as i32);
        }
        self.device.single()
    }
}

/// The loss network options `optimize` and `eval` share.
pub fn load_vgg(kind: VggKind, weights: Option<&Path>, device: Device) -> anyhow::Result<Vgg> {
    let path = match weights {
        Some(path) => path.to_path_buf(),
        None => {
            let path = PathBuf::from(DEFAULT_VGG19_WEIGHTS);
            if kind != VggKind::Vgg19 {
                bail!("--loss-weights is needed for {kind} (`make vgg` provides vgg19)");
            }
            if !path.exists() {
                bail!("{DEFAULT_VGG19_WEIGHTS} is missing: run `make vgg` to fetch the VGG-19 loss network, or give --loss-weights");
            }
            path
        }
    };
    Vgg::load(&path, kind, device).context("loss network")
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Optimizer {
    /// L-BFGS (as torch.optim.LBFGS), the classic choice
    Lbfgs,
    /// Adam with --lr
    Adam,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LineSearchArg {
    None,
    StrongWolfe,
}

/// Optimize an image to hold a photo's content in a painting's style
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The photo
    #[arg(value_name = "CONTENT")]
    content: PathBuf,
    /// Style picture; repeat to blend several
    #[arg(long, required = true, value_name = "IMAGE")]
    style: Vec<PathBuf>,
    /// Blend weights of the style pictures, comma-separated (normalised) [default: equal]
    #[arg(long, value_delimiter = ',', value_name = "W,W")]
    style_blend: Option<Vec<f64>>,
    /// Output image (png, jpg, webp, bmp, tiff)
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Longer side of the result, reached through halved sizes of at least 192 first (512:
    /// 256 then 512) [default: the photo's, at most 512]
    #[arg(long, value_name = "N", conflicts_with = "sizes")]
    size: Option<u32>,
    /// The coarse-to-fine schedule: longer sides, growing (e.g. 256,512,1024)
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    sizes: Option<Vec<u32>>,
    /// Iterations: one number for every scale, or one per scale [default: 150 at the first
    /// scale, 50 at each finer one]
    #[arg(long, value_delimiter = ',', value_name = "N")]
    iterations: Option<Vec<u64>>,
    /// The optimizer of the pixels
    #[arg(long, value_enum, default_value_t = Optimizer::Lbfgs)]
    optimizer: Optimizer,
    /// L-BFGS line search: none (a step of 1, as neural-style) or strong-wolfe
    #[arg(long, value_enum, default_value_t = LineSearchArg::None)]
    line_search: LineSearchArg,
    /// L-BFGS history (pairs kept; lowered automatically to fit huge images)
    #[arg(long, default_value_t = trainer::optimize::DEFAULT_HISTORY)]
    history: usize,
    /// Adam learning rate (pixels are 0-255)
    #[arg(long, default_value_t = 5.0)]
    lr: f64,
    /// Where to start: content, noise, builtin[:STYLE] (the built-in network), arbitrary[:PICTURE]
    /// (the arbitrary-style network with the first --style picture, or another) or a model file
    /// (with --init-style for a multi-style one); a fast result is then refined
    #[arg(long, default_value = "content", value_name = "INIT")]
    init: String,
    /// Style of the --init model: index, name or mix (as `stylize --style`)
    #[arg(long, value_name = "STYLE")]
    init_style: Option<String>,
    /// Weight of the content loss [default: the yardstick's, see docs/training.md]
    #[arg(long)]
    content_weight: Option<f64>,
    /// Weight of the style loss
    #[arg(long)]
    style_weight: Option<f64>,
    /// Weight of the total-variation loss
    #[arg(long)]
    tv_weight: Option<f64>,
    /// Content layers, comma-separated [default: relu4_2]
    #[arg(long, value_delimiter = ',')]
    content_layers: Option<Vec<String>>,
    /// Style layers, comma-separated [default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1]
    #[arg(long, value_delimiter = ',')]
    style_layers: Option<Vec<String>>,
    /// Weight per style layer, comma-separated [default: 1 each]
    #[arg(long, value_delimiter = ',')]
    style_layer_weights: Option<Vec<f64>>,
    /// Size of the style pictures relative to the image (their longer sides)
    #[arg(long, default_value_t = 1.0)]
    style_scale: f64,
    /// Keep the photo's colours: take only the luminance of the result
    #[arg(long)]
    preserve_color: bool,
    /// Write the image every N iterations beside the output (`<stem>-<iteration>.<ext>`)
    #[arg(long, value_name = "N")]
    save_every: Option<u64>,
    /// Seed of the noise initialisation
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Loss network: vgg19 or vgg16
    #[arg(long, value_name = "NET", default_value_t = VggKind::Vgg19)]
    loss_net: VggKind,
    /// Loss-network weights [default: weights/vgg19.safetensors, made by `make vgg`]
    #[arg(long, value_name = "PATH")]
    loss_weights: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// JPEG quality, 1-100
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Overwrite the output if it exists
    #[arg(long)]
    force: bool,
    /// Print a JSON record of the result (losses, iterations, seconds) on stdout
    #[arg(long)]
    json: bool,
    /// Print only errors
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    infer::tune_allocator();
    // Everything that can fail on bad arguments or inputs, before any long work.
    let device = args.runtime.apply()?;
    let format = OutputFormat::from_path(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    models::file::check_new_output(&args.output, args.force)?;
    if args.save_every == Some(0) {
        bail!("--save-every must be at least 1");
    }
    let kind = args.loss_net;
    let config = config(&args, kind)?;
    let max_pixels = args.runtime.max_pixels.get();
    let content = read_picture(&args.content, max_pixels).context("content image")?;
    let size = args
        .size
        .unwrap_or_else(|| content.width().max(content.height()).min(DEFAULT_MAX_SIZE));
    let schedule = schedule(size, args.sizes.as_deref(), args.iterations.as_deref())?;
    trainer::optimize::validate_schedule(&schedule)?;
    config.validate()?;
    let blend = match &args.style_blend {
        Some(weights) if weights.len() != args.style.len() => bail!(
            "{} --style-blend weights for {} style pictures",
            weights.len(),
            args.style.len()
        ),
        Some(weights) => weights.clone(),
        None => vec![1.0; args.style.len()],
    };
    let styles = args
        .style
        .iter()
        .zip(blend)
        .map(|(path, weight)| {
            Ok(StyleImage {
                image: read_picture(path, max_pixels).context("style image")?,
                weight,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let vgg = load_vgg(kind, args.loss_weights.as_deref(), device)?;
    let init = init(&args, &content, schedule[0].size, device)?;

    let started = Instant::now();
    let bar = super::common::progress_bar(
        !args.quiet && std::io::stderr().is_terminal(),
        Some(1),
        super::common::OPTIMIZE,
    );
    let mut done_before = 0;
    // The iterations alone, without loading the VGG and images (for the iterations/s figure).
    let mut iterations_started = None;
    let on_event = |event: Event| -> trainer::Result<()> {
        match event {
            Event::ScaleStarted {
                index,
                width,
                height,
                iterations,
            } => {
                if index > 0 {
                    done_before += bar.position();
                }
                iterations_started.get_or_insert_with(Instant::now);
                bar.set_length(iterations);
                bar.set_position(0);
                bar.set_prefix(format!("{width}x{height}"));
                if !args.quiet && bar.is_hidden() {
                    eprintln!(
                        "scale {}: {width}x{height}, {iterations} iterations",
                        index + 1
                    );
                }
            }
            Event::Iteration {
                iteration,
                losses,
                image,
                ..
            } => {
                bar.set_position(iteration);
                bar.set_message(format!(
                    "total {:.4e}  content {:.3e}  style {:.3e}  tv {:.3e}",
                    losses.total(),
                    losses.content,
                    losses.style(),
                    losses.tv
                ));
                if let Some(every) = args.save_every {
                    let overall = done_before + iteration;
                    if overall % every == 0 {
                        let path = intermediate_path(&args.output, overall);
                        write_image(&image.clamp(0.0, 255.0), &path, format, args.quality)
                            .map_err(|e| trainer::Error::Config(format!("{e:#}")))?;
                    }
                }
            }
        }
        Ok(())
    };
    let outcome = trainer::optimize::run(
        &vgg, &content, &styles, init, &schedule, &config, device, on_event,
    )
    .during_work()?;
    bar.finish_and_clear();
    let optimizing = iterations_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    write_image(&outcome.image, &args.output, format, args.quality).during_work()?;
    let seconds = started.elapsed().as_secs_f64();
    let size = outcome.image.size();
    if args.json {
        let record = serde_json::json!({
            "output": args.output.display().to_string(),
            "size": [size[2], size[1]],
            "sizes": schedule.iter().map(|s| s.size).collect::<Vec<_>>(),
            "iterations": outcome.iterations,
            "evaluations": outcome.evaluations,
            "seconds": seconds,
            "iterations_per_s": outcome.iterations as f64 / optimizing.max(1e-9),
            "device": format!("{device:?}").to_lowercase(),
            "loss": {
                "total": outcome.losses.total(),
                "content": outcome.losses.content,
                "style": outcome.losses.style(),
                "tv": outcome.losses.tv,
                "style_layers": config.style_taps.iter().map(Tap::to_string)
                    .zip(&outcome.losses.style_layers)
                    .map(|(tap, value)| (tap, serde_json::json!(value)))
                    .collect::<serde_json::Map<_, _>>(),
            },
        });
        out::line(&record)?;
    }
    if !args.quiet {
        eprintln!(
            "{} -> {} ({}x{}, {} iterations, {:.1} s; total loss {:.4e}, content {:.3e}, style {:.3e})",
            args.content.display(),
            args.output.display(),
            size[2],
            size[1],
            outcome.iterations,
            seconds,
            outcome.losses.total(),
            outcome.losses.content,
            outcome.losses.style()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn config(args: &Args, kind: VggKind) -> anyhow::Result<OptimizeConfig> {
    let defaults = OptimizeConfig::default();
    let taps = |names: &Option<Vec<String>>, default: Vec<Tap>| -> anyhow::Result<Vec<Tap>> {
        match names {
            Some(names) => names
                .iter()
                .map(|n| n.trim().parse::<Tap>().map_err(anyhow::Error::from))
                .collect(),
            None => Ok(default),
        }
    };
    // VGG-16 has other layers; its defaults are the trainer's (Johnson et al.).
    let (content_default, style_default) = match kind {
        VggKind::Vgg19 => (defaults.content_taps.clone(), defaults.style_taps.clone()),
        VggKind::Vgg16 => (kind.default_content_taps(), kind.default_style_taps()),
    };
    let content_taps = taps(&args.content_layers, content_default)?;
    let style_taps = taps(&args.style_layers, style_default)?;
    if let Some(tap) = content_taps
        .iter()
        .chain(&style_taps)
        .find(|t| !kind.taps().contains(t))
    {
        bail!("{kind} has no layer {tap}");
    }
    let method = match args.optimizer {
        Optimizer::Lbfgs => Method::Lbfgs {
            history_size: args.history,
            line_search: match args.line_search {
                LineSearchArg::None => LineSearch::None,
                LineSearchArg::StrongWolfe => LineSearch::StrongWolfe,
            },
        },
        Optimizer::Adam => Method::Adam { lr: args.lr },
    };
    Ok(OptimizeConfig {
        style_layer_weights: args
            .style_layer_weights
            .clone()
            .unwrap_or_else(|| vec![1.0; style_taps.len()]),
        content_taps,
        style_taps,
        content_weight: args.content_weight.unwrap_or(defaults.content_weight),
        style_weight: args.style_weight.unwrap_or(defaults.style_weight),
        tv_weight: args.tv_weight.unwrap_or(defaults.tv_weight),
        method,
        style_scale: args.style_scale,
        preserve_color: args.preserve_color,
        seed: args.seed,
    })
}

/// The scales: --sizes as given, or 256, 512, ... doubling up to --size; iterations per scale.
fn schedule(
    size: u32,
    sizes: Option<&[u32]>,
    iterations: Option<&[u64]>,
) -> anyhow::Result<Vec<Scale>> {
    let sizes = match sizes {
        Some(sizes) => sizes.to_vec(),
        None => {
            if size < 16 {
                bail!("--size must be at least 16");
            }
            let mut sizes = vec![size];
            while sizes[0] / 2 >= COARSEST {
                sizes.insert(0, sizes[0] / 2);
            }
            sizes
        }
    };
    for pair in sizes.windows(2) {
        if pair[1] <= pair[0] {
            bail!(
                "--sizes must grow from coarse to fine, but {} follows {}",
                pair[1],
                pair[0]
            );
        }
    }
    let per_scale: Vec<u64> = match iterations {
        None => (0..sizes.len())
            .map(|i| {
                if i == 0 {
                    DEFAULT_COARSE_ITERATIONS
                } else {
                    DEFAULT_FINE_ITERATIONS
                }
            })
            .collect(),
        Some([n]) => vec![*n; sizes.len()],
        Some(list) if list.len() == sizes.len() => list.to_vec(),
        Some(list) => bail!(
            "{} --iterations values for {} sizes (give one, or one per size)",
            list.len(),
            sizes.len()
        ),
    };
    Ok(sizes
        .into_iter()
        .zip(per_scale)
        .map(|(size, iterations)| Scale { size, iterations })
        .collect())
}

/// The starting image: the photo, noise, or a network's stylization at the first scale.
fn init(
    args: &Args,
    content: &DynamicImage,
    first_size: u32,
    device: Device,
) -> anyhow::Result<Init> {
    let source = match args.init.as_str() {
        "content" => return Ok(Init::Content),
        "noise" => return Ok(Init::Noise),
        "builtin" => StyleSource::from_args(None, args.init_style.as_deref(), None)?,
        // The arbitrary-style network with the (first) style picture, or another picture.
        "arbitrary" => {
            let picture = args.style[0].display().to_string();
            StyleSource::from_args(None, None, Some(&picture))?
        }
        other => match (
            other.strip_prefix("builtin:"),
            other.strip_prefix("arbitrary:"),
        ) {
            (Some(style), _) => StyleSource::from_args(None, Some(style), None)?,
            (_, Some(pictures)) => StyleSource::from_args(None, None, Some(pictures))?,
            _ => {
                let path = PathBuf::from(other);
                if !path.is_file() {
                    bail!("--init `{other}` is neither content, noise, builtin[:STYLE], arbitrary[:PICTURE] nor a model file");
                }
                StyleSource::from_args(Some(&path), args.init_style.as_deref(), None)?
            }
        },
    };
    let stylizer = source
        .stylizer(device, Precision::F32, Finish::default())
        .context("cannot load the --init network")?;
    let photo =
        models::pixels::image_to_tensor(&models::eval::resize_longer_side(content, first_size));
    let stylized = stylizer.stylize(&photo.unsqueeze(0))?;
    Ok(Init::Image(stylized.squeeze_dim(0)))
}

fn write_image(
    image: &tch::Tensor,
    path: &Path,
    format: OutputFormat,
    quality: u8,
) -> anyhow::Result<()> {
    let rgb = models::pixels::tensor_to_image(image)?;
    let bytes = infer::image_io::encode(&rgb, format, quality)
        .map_err(|e| anyhow::anyhow!("cannot encode {}: {e}", path.display()))?;
    models::file::write_atomically(path, &bytes)?;
    Ok(())
}

/// `out.png` → `out-0100.png`.
fn intermediate_path(output: &Path, iteration: u64) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "optimized".into());
    let ext = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    output.with_file_name(format!("{stem}-{iteration:04}{ext}"))
}
