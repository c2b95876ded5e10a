//! Style transfer by optimization: Gatys, Ecker, Bethge, "Image Style Transfer Using
//! Convolutional Neural Networks" (CVPR 2016). No network is trained; the image itself is the
//! variable, and L-BFGS (or Adam) lowers the content loss against the photo, the Gram-matrix
//! style loss against the style pictures and a total-variation term, through the frozen VGG.
//!
//! Losses follow `models::loss` (Gram / c·h·w, mean squared errors) and, with the default
//! configuration, are exactly the objective of the quality yardstick `models::eval`. Large
//! images are reached coarse to fine: each scale starts from the upsampled result of the one
//! before, so the expensive full-size scale only refines (as neural-style's multires recipe).

pub use image::DynamicImage;
use models::eval;
use models::loss;
use models::precision::to_channels_last;
use models::{Tap, Vgg};
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;
use crate::error::{Error, Result};
use crate::lbfgs::{Lbfgs, LbfgsOptions, LineSearch, StepEnd};

/// Which optimizer moves the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// L-BFGS with a fixed step of 1 (neural-style's) or a strong-Wolfe line search.
    Lbfgs {
        history_size: usize,
        line_search: LineSearch,
    },
    /// Adam at this learning rate (pixels are in [0, 255]).
    Adam { lr: f64 },
}

/// Where the first scale starts.
#[derive(Debug)]
pub enum Init {
    /// The photo itself.
    Content,
    /// Uniform noise in [0, 255] (from the seed).
    Noise,
    /// An image `[3, H, W]` (e.g. a feed-forward network's result), resized to the first scale.
    Image(Tensor),
}

/// One scale of the schedule: the longer side in pixels and the iterations spent there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub size: u32,
    pub iterations: u64,
}

/// The objective and the optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizeConfig {
    pub content_taps: Vec<Tap>,
    pub style_taps: Vec<Tap>,
    pub style_layer_weights: Vec<f64>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub method: Method,
    /// The style pictures' longer side relative to the image's.
    pub style_scale: f64,
    /// Take only the luminance of the result, keep the photo's colours.
    pub preserve_color: bool,
    pub seed: u64,
}

/// L-BFGS keeps this many curvature pairs by default (`torch.optim.LBFGS`'s and neural-style's
/// 100); the driver lowers it for huge images, see `history_for`.
pub const DEFAULT_HISTORY: usize = 100;

impl Default for OptimizeConfig {
    /// The yardstick's objective (`models::eval`), minimised by L-BFGS without line search.
    fn default() -> Self {
        Self {
            content_taps: vec![eval::CONTENT_TAP],
            style_taps: eval::STYLE_TAPS.to_vec(),
            style_layer_weights: vec![1.0; eval::STYLE_TAPS.len()],
            content_weight: eval::CONTENT_WEIGHT,
            style_weight: eval::STYLE_WEIGHT,
            tv_weight: eval::TV_WEIGHT,
            method: Method::Lbfgs {
                history_size: DEFAULT_HISTORY,
                line_search: LineSearch::None,
            },
            style_scale: 1.0,
            preserve_color: false,
            seed: 42,
        }
    }
}

impl OptimizeConfig {
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(Error::Config(message));
        if self.content_taps.is_empty() || self.style_taps.is_empty() {
            return fail("at least one content layer and one style layer are needed".into());
        }
        if self.style_layer_weights.len() != self.style_taps.len() {
            return fail(format!(
                "{} style layer weights for {} style layers",
                self.style_layer_weights.len(),
                self.style_taps.len()
            ));
        }
        let lr = match self.method {
            Method::Adam { lr } => lr,
            Method::Lbfgs { history_size, .. } => {
                if history_size == 0 {
                    return fail("the l-bfgs history must hold at least 1 pair".into());
                }
                1.0
            }
        };
        if [self.content_weight, self.style_weight, self.tv_weight, lr]
            .iter()
            .chain(&self.style_layer_weights)
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return fail(
                "loss weights and the learning rate must be finite and not negative".into(),
            );
        }
        if !(self.style_scale.is_finite() && self.style_scale > 0.0) {
            return fail("the style scale must be a positive number".into());
        }
        Ok(())
    }
}

/// A style picture and its blend weight (weights are normalised to sum to 1).
pub struct StyleImage {
    pub image: DynamicImage,
    pub weight: f64,
}

/// The loss terms of one evaluation, each multiplied by its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Losses {
    pub content: f64,
    /// One per style layer, in the configuration's order.
    pub style_layers: Vec<f64>,
    pub tv: f64,
}

impl Losses {
    pub fn style(&self) -> f64 {
        self.style_layers.iter().sum()
    }

    pub fn total(&self) -> f64 {
        self.content + self.style() + self.tv
    }
}

/// What the optimization reports as it goes.
pub enum Event<'a> {
    /// A scale starts: its index, size in pixels and iterations.
    ScaleStarted {
        index: usize,
        width: i64,
        height: i64,
        iterations: u64,
    },
    /// An iteration finished; `losses` are those of the iterate it started from (the one
    /// evaluation per iteration) and `image` the new iterate, `[3, H, W]`, not clamped.
    Iteration {
        scale: usize,
        iteration: u64,
        losses: &'a Losses,
        image: &'a Tensor,
    },
}

/// The result: the image `[3, H, W]` in [0, 255] on the CPU, and the losses of the final image
/// at the last scale (before colour preservation).
pub struct Outcome {
    pub image: Tensor,
    pub losses: Losses,
    pub iterations: u64,
    pub evaluations: u64,
}

/// L-BFGS history that fits: at most `DEFAULT_HISTORY` pairs and about 2 GiB of them (each pair
/// is two f32 copies of the image), so 2048² and more stay in memory.
pub fn history_for(requested: usize, n_values: i64) -> usize {
    const BUDGET_BYTES: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;
    let per_pair = 2.0 * 4.0 * n_values as f64;
    requested.min((BUDGET_BYTES / per_pair).floor().max(5.0) as usize)
}

/// Runs the schedule. `content` and the style pictures are decoded images; `vgg` lives on
/// `device`. `on_event` sees every scale start and every iteration and may stop the run by
/// returning an error (e.g. a failed intermediate write).
#[allow(clippy::too_many_arguments)]
pub fn run(
    vgg: &Vgg,
    content: &DynamicImage,
    styles: &[StyleImage],
    init: Init,
    schedule: &[Scale],
    config: &OptimizeConfig,
    device: Device,
    mut on_event: impl FnMut(Event) -> Result<()>,
) -> Result<Outcome> {
    config.validate()?;
    validate_schedule(schedule)?;
    if styles.is_empty() {
        return Err(Error::Config("at least one style image is needed".into()));
    }
    let total_weight: f64 = styles.iter().map(|s| s.weight).sum();
    if styles
        .iter()
        .any(|s| !(s.weight.is_finite() && s.weight >= 0.0))
        || total_weight <= 0.0
    {
        return Err(Error::Config(
            "style blend weights must be non-negative and not all 0".into(),
        ));
    }
    tch::manual_seed(config.seed as i64);

    let mut current: Option<Tensor> = None;
    let mut last = None;
    let (mut iterations, mut evaluations) = (0, 0);
    let mut init = Some(init);
    for (index, scale) in schedule.iter().enumerate() {
        let photo = image_tensor(&eval::resize_longer_side(content, scale.size), device);
        let (height, width) = (photo.size()[1], photo.size()[2]);
        let style_side = ((scale.size as f64) * config.style_scale).round().max(16.0) as u32;
        let mut style_grams: Option<Vec<Tensor>> = None;
        for style in styles {
            let image = image_tensor(&eval::resize_longer_side(&style.image, style_side), device);
            let grams = tch::no_grad(|| -> Result<Vec<Tensor>> {
                let features = vgg.features(&image.unsqueeze(0), &config.style_taps)?;
                Ok(features
                    .iter()
                    .map(|f| loss::gram(f) * (style.weight / total_weight))
                    .collect())
            })?;
            style_grams = Some(match style_grams {
                None => grams,
                Some(sum) => sum.iter().zip(&grams).map(|(a, b)| a + b).collect(),
            });
        }
        let objective = Objective {
            vgg,
            config,
            content_targets: tch::no_grad(|| {
                vgg.features(&to_channels_last(&photo.unsqueeze(0)), &config.content_taps)
            })?,
            style_grams: style_grams.unwrap_or_default(),
        };

        let start = match (current.take(), init.take()) {
            (Some(previous), _) => resize_tensor(&previous.clamp(0.0, 255.0), height, width),
            (None, Some(Init::Content)) | (None, None) => photo.copy(),
            (None, Some(Init::Noise)) => {
                Tensor::rand([3, height, width], (Kind::Float, device)) * 255.0
            }
            (None, Some(Init::Image(image))) => {
                resize_tensor(&image.to_device(device).to_kind(Kind::Float), height, width)
            }
        };
        let x = start.contiguous();
        on_event(Event::ScaleStarted {
            index,
            width,
            height,
            iterations: scale.iterations,
        })?;
        let done = optimize_scale(
            &objective,
            &x,
            index,
            scale.iterations,
            config,
            &mut on_event,
        )?;
        iterations += done.0;
        evaluations += done.1 + 1;
        last = Some(tch::no_grad(|| objective.losses(&x.unsqueeze(0)))?.1);
        current = Some(x);
    }
    let image = current.ok_or_else(|| Error::Config("the schedule has no scale".into()))?;
    let mut image = image.clamp(0.0, 255.0);
    if config.preserve_color {
        let photo = image_tensor(
            &models::eval::resize_longer_side(content, image.size()[2].max(image.size()[1]) as u32),
            device,
        );
        let photo = resize_tensor(&photo, image.size()[1], image.size()[2]);
        image = (&photo + (luminance(&image) - luminance(&photo))).clamp(0.0, 255.0);
    }
    Ok(Outcome {
        image: image.to_device(Device::Cpu),
        losses: last.ok_or_else(|| Error::Config("the schedule has no scale".into()))?,
        iterations,
        evaluations,
    })
}

/// Sizes must grow strictly and be at least 16 pixels; every scale needs an iteration.
pub fn validate_schedule(schedule: &[Scale]) -> Result<()> {
    if schedule.is_empty() {
        return Err(Error::Config("at least one size is needed".into()));
    }
    for pair in schedule.windows(2) {
        if pair[1].size <= pair[0].size {
            return Err(Error::Config(format!(
                "sizes must grow from coarse to fine, but {} follows {}",
                pair[1].size, pair[0].size
            )));
        }
    }
    if schedule[0].size < 16 {
        return Err(Error::Config("sizes must be at least 16 pixels".into()));
    }
    if schedule.iter().any(|s| s.iterations == 0) {
        return Err(Error::Config(
            "every scale needs at least one iteration".into(),
        ));
    }
    Ok(())
}

/// The targets of one scale and the loss they define.
struct Objective<'a> {
    vgg: &'a Vgg,
    config: &'a OptimizeConfig,
    content_targets: Vec<Tensor>,
    style_grams: Vec<Tensor>,
}

impl Objective<'_> {
    /// The weighted total (a graph to `x`) and its terms read back.
    fn losses(&self, x: &Tensor) -> Result<(Tensor, Losses)> {
        let config = self.config;
        let mut taps = config.content_taps.clone();
        taps.extend(&config.style_taps);
        // Channels-last: oneDNN's convolutions and ATen's max-pool are fastest so on the CPU.
        let features = self.vgg.features(&to_channels_last(x), &taps)?;
        let n_content = config.content_taps.len();
        let content = loss::content_loss(&features[..n_content], &self.content_targets)
            * config.content_weight;
        let style_layers: Vec<Tensor> = features[n_content..]
            .iter()
            .zip(&self.style_grams)
            .zip(&config.style_layer_weights)
            .map(|((feature, gram), &weight)| {
                loss::style_loss(
                    std::slice::from_ref(feature),
                    std::slice::from_ref(gram),
                    &[weight],
                ) * config.style_weight
            })
            .collect();
        let tv = loss::tv_loss(x) * config.tv_weight;
        let mut total = &content + &tv;
        for term in &style_layers {
            total += term;
        }
        // One read-back for every term.
        let mut terms = vec![content.detach(), tv.detach()];
        terms.extend(style_layers.iter().map(Tensor::detach));
        let values = Vec::<f64>::try_from(Tensor::stack(&terms, 0).to_kind(Kind::Double))?;
        let losses = Losses {
            content: values[0],
            tv: values[1],
            style_layers: values[2..].to_vec(),
        };
        if !values.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFinite {
                term: "optimization".into(),
                step: 0,
            });
        }
        Ok((total, losses))
    }

    /// Loss terms and the gradient at `image` (`[3, H, W]`).
    fn evaluate(&self, image: &Tensor) -> Result<(Losses, Tensor)> {
        let x = image.detach().unsqueeze(0).set_requires_grad(true);
        let (total, losses) = self.losses(&x)?;
        let grad = Tensor::run_backward(&[&total], &[&x], false, false).remove(0);
        Ok((losses, grad.squeeze_dim(0)))
    }
}

/// Iterations on one scale; returns (iterations, evaluations).
fn optimize_scale(
    objective: &Objective,
    x: &Tensor,
    scale: usize,
    n_iterations: u64,
    config: &OptimizeConfig,
    on_event: &mut impl FnMut(Event) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut evaluations = 0;
    match config.method {
        Method::Lbfgs {
            history_size,
            line_search,
        } => {
            // One iteration per step: without a line search that is exactly one long run
            // (a step's first evaluation is the previous step's last update), and the caller
            // sees every iterate. With a line search it costs one evaluation more per step.
            let mut lbfgs = Lbfgs::new(LbfgsOptions {
                max_iter: 1,
                history_size: history_for(history_size, x.numel() as i64),
                line_search,
                ..Default::default()
            });
            for iteration in 1..=n_iterations {
                let mut first = None;
                let report = lbfgs.step(x, |image| -> Result<(f64, Tensor)> {
                    let (losses, grad) = objective.evaluate(image)?;
                    let total = losses.total();
                    first.get_or_insert(losses);
                    Ok((total, grad))
                })?;
                evaluations += report.evaluations;
                if let Some(losses) = &first {
                    on_event(Event::Iteration {
                        scale,
                        iteration,
                        losses,
                        image: x,
                    })?;
                }
                if report.end == StepEnd::Converged {
                    return Ok((iteration, evaluations));
                }
            }
        }
        Method::Adam { lr } => {
            let mut adam = Adam::new(&[x.shallow_clone()]);
            for iteration in 1..=n_iterations {
                let (losses, grad) = objective.evaluate(x)?;
                adam.step(&[x.shallow_clone()], &[grad], lr);
                evaluations += 1;
                on_event(Event::Iteration {
                    scale,
                    iteration,
                    losses: &losses,
                    image: x,
                })?;
            }
        }
    }
    Ok((n_iterations, evaluations))
}

fn image_tensor(image: &DynamicImage, device: Device) -> Tensor {
    models::pixels::image_to_tensor(image).to_device(device)
}

/// `[3, H, W]` resized to `height`x`width` (bicubic; antialiased bilinear when shrinking).
fn resize_tensor(image: &Tensor, height: i64, width: i64) -> Tensor {
    let size = image.size();
    if size[1] == height && size[2] == width {
        return image.shallow_clone();
    }
    let batch = image.unsqueeze(0);
    let resized = if height < size[1] || width < size[2] {
        batch.internal_upsample_bilinear2d_aa([height, width], false, None, None)
    } else {
        batch.upsample_bicubic2d([height, width], false, None, None)
    };
    resized.squeeze_dim(0)
}

/// ITU-R BT.601 luma of `[3, H, W]`, shaped `[1, H, W]` (as `infer`'s colour preservation).
fn luminance(rgb: &Tensor) -> Tensor {
    let coefficients = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .to_device(rgb.device())
        .view([3, 1, 1]);
    (rgb * coefficients).sum_dim_intlist(&[0i64][..], true, Kind::Float)
}
