//! The feed-forward style transformer.
//!
//! Johnson, Alahi, Li, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
//! (ECCV 2016), with instance norm (Ulyanov, Vedaldi, Lempitsky 2016) and, for several styles,
//! conditional instance norm (Dumoulin, Shlens, Kudlur, "A Learned Representation for Artistic
//! Style", ICLR 2017), or with norms computed from a style vector (Ghiasi, Lee, Kudlur,
//! Dumoulin, Shlens, "Exploring the Structure of a Real-Time, Arbitrary Neural Artistic
//! Stylization Network", BMVC 2017). Layout and variable names follow pytorch/examples
//! `fast_neural_style` (`transformer_net.py`), so its saved state dicts load unchanged; the
//! layers are the ones `NetSpec::structure` lists. Weights: trained by `atelier train`,
//! converted by `atelier convert` (pytorch/examples files, Magenta's multi-style network), or
//! the built-in 26-style network; the `arbitrary` preset is laid out for Magenta's
//! arbitrary-stylization transformer weights (Apache-2.0).

use tch::{nn, Kind, Tensor};

use crate::error::{Error, Result};
use crate::spec::{
    Activation, Conditioning, Layer, NetSpec, OutputActivation, Padding, Scale, Upsample,
};

/// Smallest input side the network accepts: the bottleneck is 1/4 of the input, and reflection
/// padding needs at least 2 pixels there.
pub const MIN_INPUT_SIDE: i64 = 16;

/// One layer of the spec's structure with its variables.
#[derive(Debug)]
struct ConvNorm {
    layer: Layer,
    /// Position in forward order: where its γ/β sit in `StyleParams`.
    index: usize,
    conv: nn::Conv2D,
    norm: Option<NormVars>,
}

/// A norm's variables, as its conditioning lays them out.
#[derive(Debug)]
enum NormVars {
    /// γ and β: `[C]` for one style, `[n_styles, C]` for conditional instance norm.
    Rows { gamma: Tensor, beta: Tensor },
    /// γ and β as linear maps of a style vector.
    Vector { gamma: LinearMap, beta: LinearMap },
}

/// `weight · v + bias`, weight `[C, D]`, bias `[C]`.
#[derive(Debug)]
struct LinearMap {
    weight: Tensor,
    bias: Tensor,
}

impl LinearMap {
    fn new(path: nn::Path, channels: i64, dim: i64, bias: f64) -> Self {
        let bias_init = nn::Init::Const(bias);
        Self {
            weight: path.zeros("weight", &[channels, dim]),
            bias: path.var("bias", &[channels], bias_init),
        }
    }

    /// In f32 (or f64) whatever the network's precision (a 100-term dot product in bf16 loses
    /// digits), returned in the weights' kind.
    fn apply(&self, vector: &Tensor) -> Tensor {
        let kind = crate::precision::accumulation_kind(self.weight.kind());
        let v = vector.to_device(self.weight.device()).to_kind(kind);
        let out = self.weight.to_kind(kind).mv(&v) + self.bias.to_kind(kind);
        out.to_kind(self.weight.kind())
    }
}

impl ConvNorm {
    /// Creates the layer's variables under `path`: the conv's (random), then the norm's (the
    /// identity: γ = 1, β = 0).
    fn new(path: &nn::Path, layer: &Layer, index: usize) -> Self {
        let config = nn::ConvConfig {
            stride: layer.stride(),
            bias: layer.bias,
            ..Default::default()
        };
        let conv = nn::conv2d(
            dotted(path, &layer.name) / "conv2d",
            layer.in_channels,
            layer.out_channels,
            layer.kernel,
            config,
        );
        let norm = layer.norm.as_ref().map(|norm| {
            let p = dotted(path, &norm.name);
            let rows = |shape: &[i64]| NormVars::Rows {
                gamma: p.ones("weight", shape),
                beta: p.zeros("bias", shape),
            };
            match norm.conditioning {
                Conditioning::Fixed => rows(&[norm.channels]),
                Conditioning::PerStyle { styles } => rows(&[styles as i64, norm.channels]),
                Conditioning::Vector { dim } => NormVars::Vector {
                    gamma: LinearMap::new(&p / "gamma", norm.channels, dim as i64, 1.0),
                    beta: LinearMap::new(&p / "beta", norm.channels, dim as i64, 0.0),
                },
            }
        });
        Self {
            layer: layer.clone(),
            index,
            conv,
            norm,
        }
    }
}

/// Per-layer γ/β for one style (a mix of styles, or a style vector), computed once and reused
/// for every image.
#[derive(Debug)]
pub struct StyleParams {
    /// One entry per layer in forward order, `None` where the layer has no norm.
    norms: Vec<Option<(Tensor, Tensor)>>,
}

/// Where instance norm takes its mean and variance from. Tiled inference records the statistics
/// of a whole-image pass and replays them on each tile, so tiles match without seams.
pub enum NormStats<'a> {
    /// From the input itself (the normal case).
    Own,
    /// From the input itself, and append each norm layer's per-channel (mean, variance),
    /// shaped `[B, C, 1, 1]`.
    Record(&'a mut Vec<(Tensor, Tensor)>),
    /// From a previous `Record`, in layer order.
    Replay(&'a [(Tensor, Tensor)]),
}

/// The network of a `NetSpec`, its layers laid out as `NetSpec::structure` describes.
#[derive(Debug)]
pub struct TransformerNet {
    spec: NetSpec,
    down: Vec<ConvNorm>,
    residual: Vec<[ConvNorm; 2]>,
    up: Vec<ConvNorm>,
    output: ConvNorm,
}

impl TransformerNet {
    /// Creates the variables under `path` (use the var store's root for state-dict names).
    pub fn new(path: &nn::Path, spec: &NetSpec) -> Result<Self> {
        spec.validate()?;
        let structure = spec.structure();
        // Built in forward order, so random initialisation draws in a fixed order.
        let mut index = 0;
        let mut build = |layer: &Layer| {
            index += 1;
            ConvNorm::new(path, layer, index - 1)
        };
        let down = structure.down.iter().map(&mut build).collect();
        let residual = structure
            .residual
            .iter()
            .map(|block| [build(&block.first), build(&block.second)])
            .collect();
        let up = structure.up.iter().map(&mut build).collect();
        let output = build(&structure.output);
        Ok(Self {
            spec: spec.clone(),
            down,
            residual,
            up,
            output,
        })
    }

    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// Every layer in forward order.
    fn layers(&self) -> impl Iterator<Item = &ConvNorm> {
        self.down
            .iter()
            .chain(self.residual.iter().flatten())
            .chain(&self.up)
            .chain(std::iter::once(&self.output))
    }

    /// γ/β for every norm from `rows(gamma, beta)`, which sees the variables of a norm with
    /// fixed or per-style rows; a network conditioned on a style vector is refused.
    fn row_params(
        &self,
        rows: impl Fn(&Tensor, &Tensor) -> (Tensor, Tensor),
    ) -> Result<StyleParams> {
        let norms = self
            .layers()
            .map(|layer| match &layer.norm {
                None => Ok(None),
                Some(NormVars::Rows { gamma, beta }) => Ok(Some(rows(gamma, beta))),
                Some(NormVars::Vector { .. }) => Err(Error::InvalidStyle(
                    "the network takes a style vector, not style weights".into(),
                )),
            })
            .collect::<Result<_>>()?;
        Ok(StyleParams { norms })
    }

    /// γ/β for a style mix. `weights` has one entry per style and is used as given (callers
    /// normalise); for a one-style network pass `&[1.0]`. Refused for a network conditioned on
    /// a style vector (use `vector_style_params`).
    pub fn style_params(&self, weights: &[f64]) -> Result<StyleParams> {
        let n = self.spec.n_styles;
        if self.spec.style_vector_dim().is_none() && weights.len() != n {
            return Err(Error::InvalidStyle(format!(
                "{} style weights given, the network has {n} styles",
                weights.len()
            )));
        }
        self.row_params(|gamma, beta| {
            if n == 1 {
                (gamma.shallow_clone(), beta.shallow_clone())
            } else {
                let w = Tensor::from_slice(weights)
                    .to_kind(gamma.kind())
                    .to_device(gamma.device());
                (w.matmul(gamma), w.matmul(beta))
            }
        })
    }

    /// γ/β for exactly one style (training: each batch is paired with one style). Keeps the
    /// graph to the selected rows so only they get gradients.
    pub fn single_style_params(&self, style: usize) -> Result<StyleParams> {
        let n = self.spec.n_styles;
        if self.spec.style_vector_dim().is_none() && style >= n {
            return Err(Error::InvalidStyle(format!(
                "style {style} does not exist (the network has {n})"
            )));
        }
        self.row_params(|gamma, beta| {
            if n == 1 {
                (gamma.shallow_clone(), beta.shallow_clone())
            } else {
                (gamma.get(style as i64), beta.get(style as i64))
            }
        })
    }

    /// γ/β from a style vector `[D]` (any float kind, any device), for a network conditioned on
    /// one (`NetSpec::style_vector_dim`): γ = W_γ·v + b_γ and β = W_β·v + b_β for every norm,
    /// computed in f32 (f64 for an f64 network) on the network's device. Refused for other
    /// networks, for a vector of another shape and for one with non-finite values.
    pub fn vector_style_params(&self, vector: &Tensor) -> Result<StyleParams> {
        let Some(dim) = self.spec.style_vector_dim() else {
            return Err(Error::InvalidStyle(format!(
                "the network is not conditioned on a style vector (it has {} styles)",
                self.spec.n_styles
            )));
        };
        if vector.size() != [dim as i64] {
            return Err(Error::InvalidStyle(format!(
                "the style vector has shape {:?}, the network takes {dim} values",
                vector.size()
            )));
        }
        let vector = vector.to_kind(crate::precision::accumulation_kind(vector.kind()));
        if !bool::try_from(vector.isfinite().all())? {
            return Err(Error::InvalidStyle(
                "the style vector has non-finite values".into(),
            ));
        }
        let norms = self
            .layers()
            .map(|layer| match &layer.norm {
                None => None,
                Some(NormVars::Vector { gamma, beta }) => {
                    Some((gamma.apply(&vector), beta.apply(&vector)))
                }
                // Not on a network with a style vector (its spec conditions every norm on it).
                Some(NormVars::Rows { gamma, beta }) => {
                    Some((gamma.shallow_clone(), beta.shallow_clone()))
                }
            })
            .collect();
        Ok(StyleParams { norms })
    }

    /// Stylizes a batch `[B, 3, H, W]` of RGB in [0, 255]; the output has the input's size and
    /// scale. Any size of at least 16×16 works: the input is reflect-padded to a multiple of 4
    /// and the output cropped back.
    pub fn forward(&self, input: &Tensor, style: &StyleParams) -> Result<Tensor> {
        self.forward_with_stats(input, style, NormStats::Own)
    }

    pub fn forward_with_stats(
        &self,
        input: &Tensor,
        style: &StyleParams,
        stats: NormStats,
    ) -> Result<Tensor> {
        self.run(input, style, stats, Rewrites::On)
    }

    fn run(
        &self,
        input: &Tensor,
        style: &StyleParams,
        mut stats: NormStats,
        rewrites: Rewrites,
    ) -> Result<Tensor> {
        let (height, width) = match input.size().as_slice() {
            &[_, 3, h, w] => (h, w),
            shape => {
                return Err(Error::Decode(format!(
                    "network input must be [batch, 3, height, width], got {shape:?}"
                )))
            }
        };
        if height < MIN_INPUT_SIDE || width < MIN_INPUT_SIDE {
            return Err(Error::InputTooSmall {
                height,
                width,
                min: MIN_INPUT_SIDE,
            });
        }
        if !self.fits(style) {
            return Err(Error::InvalidStyle(
                "the style parameters belong to another network".into(),
            ));
        }
        let (pad_h, pad_w) = ((4 - height % 4) % 4, (4 - width % 4) % 4);
        let mut x = if pad_h + pad_w > 0 {
            input.reflection_pad2d([0, pad_w, 0, pad_h])
        } else {
            input.shallow_clone()
        };
        // Without autograd, intermediate tensors can be overwritten in place.
        let inference = !grad_mode_enabled();
        let mode = Mode {
            inference,
            rewrites,
        };
        if self.spec.input_scale != 1.0 && !inference {
            // Not `*=`: `x` may share storage with the caller's input. At inference the scale
            // goes into the first conv's weights instead (see `conv_norm`).
            x = x.multiply_scalar(self.spec.input_scale);
        }
        let mut norm_index = 0;
        let mut layer = |x: &Tensor, layer: &ConvNorm, stats: &mut NormStats| {
            let mut y = self.conv_norm(x, layer, style, stats, &mut norm_index, mode);
            match (layer.layer.activation, inference) {
                (Activation::None, _) => y,
                (Activation::Relu, true) => y.relu_(),
                (Activation::Relu, false) => y.relu(),
                (Activation::Output(OutputActivation::None), _) => y,
                (Activation::Output(OutputActivation::Sigmoid), true) => {
                    y.sigmoid_().g_mul_scalar_(255.0)
                }
                (Activation::Output(OutputActivation::Sigmoid), false) => y.sigmoid() * 255.0,
                (Activation::Output(OutputActivation::Tanh), _) => (y.tanh() + 1.0) * 127.5,
            }
        };

        for down in &self.down {
            x = layer(&x, down, &mut stats);
        }
        for [first, second] in &self.residual {
            let h = layer(&x, first, &mut stats);
            let mut h = layer(&h, second, &mut stats);
            x = if inference { h.g_add_(&x) } else { h + x };
        }
        for up in &self.up {
            x = layer(&x, up, &mut stats);
        }
        x = layer(&x, &self.output, &mut stats);

        if pad_h + pad_w > 0 {
            x = x.narrow(2, 0, height).narrow(3, 0, width);
        }
        Ok(x)
    }

    /// Whether `style` has a γ/β of the right width exactly where this network has a norm.
    fn fits(&self, style: &StyleParams) -> bool {
        style.norms.len() == self.layers().count()
            && self.layers().zip(&style.norms).all(|(layer, params)| {
                match (&layer.layer.norm, params) {
                    (None, None) => true,
                    (Some(norm), Some((gamma, beta))) => {
                        gamma.size() == [norm.channels] && beta.size() == [norm.channels]
                    }
                    _ => false,
                }
            })
    }

    /// Whether a layer is a nearest ×2 upsample and 3×3 conv done in the sub-pixel form.
    fn sub_pixel(layer: &Layer, rewrites: Rewrites) -> bool {
        rewrites == Rewrites::On
            && layer.scale == Scale::Up2(Upsample::Nearest)
            && layer.kernel == 3
    }

    fn conv_norm(
        &self,
        x: &Tensor,
        unit: &ConvNorm,
        style: &StyleParams,
        stats: &mut NormStats,
        norm_index: &mut usize,
        mode: Mode,
    ) -> Tensor {
        let Mode {
            inference,
            rewrites,
        } = mode;
        let layer = &unit.layer;
        let y = if Self::sub_pixel(layer, rewrites) {
            upsample_conv_sub_pixel(x, &unit.conv, layer.padding)
        } else {
            let upsampled = match layer.scale {
                Scale::Up2(mode) => upsample(x, mode),
                Scale::Same | Scale::Down2 => x.shallow_clone(),
            };
            let p = layer.pad();
            let padded = match layer.padding {
                Padding::Reflect => upsampled.reflection_pad2d([p, p, p, p]),
                Padding::Zero => upsampled.constant_pad_nd([p, p, p, p]),
            };
            let stride = layer.stride();
            if unit.index == 0 && inference && self.spec.input_scale != 1.0 {
                // conv(s·x) = (s·W) * x + b: one pass over a small kernel instead of the input.
                let weight = unit.conv.ws.multiply_scalar(self.spec.input_scale);
                padded.conv2d(
                    &weight,
                    unit.conv.bs.as_ref(),
                    [stride; 2],
                    [0, 0],
                    [1, 1],
                    1,
                )
            } else if rewrites == Rewrites::On
                && inference
                && space_to_depth_fits(&padded, &unit.conv.ws, stride)
            {
                conv_space_to_depth(&padded, &unit.conv.ws, unit.conv.bs.as_ref())
            } else if rewrites == Rewrites::On && is_narrow(&unit.conv.ws) && stride == 1 {
                conv_by_rows(&padded, &unit.conv.ws, unit.conv.bs.as_ref())
            } else {
                padded.apply(&unit.conv)
            }
        };
        let (Some(norm), Some((gamma, beta))) = (&layer.norm, &style.norms[unit.index]) else {
            return y;
        };
        let eps = norm.eps;
        let channels = norm.channels;
        match stats {
            // group_norm with one group per channel is instance norm, through a fused kernel.
            NormStats::Own if channels < 8 && is_channels_last(&y) => {
                // ATen's channels-last group norm takes a slow path below 8 channels (a
                // hundredfold slower at 4 channels, 1024²): normalise in NCHW and come back.
                let out = y
                    .contiguous()
                    .group_norm(channels, Some(gamma), Some(beta), eps, true);
                // The network's output may stay NCHW: no layer reads it.
                if matches!(layer.activation, Activation::Output(_)) {
                    out
                } else {
                    crate::precision::to_channels_last(&out)
                }
            }
            NormStats::Own => y.group_norm(channels, Some(gamma), Some(beta), eps, true),
            NormStats::Record(out) => {
                let mean = y.mean_dim(&[2i64, 3][..], true, Kind::Float);
                let var = y.var_dim(&[2i64, 3][..], false, true);
                out.push((mean.shallow_clone(), var.shallow_clone()));
                affine_normalise(&y, &mean, &var, gamma, beta, eps)
            }
            NormStats::Replay(recorded) => {
                let (mean, var) = &recorded[*norm_index];
                *norm_index += 1;
                affine_normalise(&y, mean, var, gamma, beta, eps)
            }
        }
    }
}

fn upsample(x: &Tensor, mode: Upsample) -> Tensor {
    let size = x.size();
    let out = [size[2] * 2, size[3] * 2];
    match mode {
        Upsample::Nearest => x.upsample_nearest2d(out, 2.0, 2.0),
        Upsample::Bilinear => x.upsample_bilinear2d(out, false, 2.0, 2.0),
    }
}

/// How a forward pass runs.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// No autograd: intermediate tensors can be overwritten in place.
    inference: bool,
    rewrites: Rewrites,
}

/// Whether the exact rewrites of expensive layers (sub-pixel upsampling, row-split narrow convs)
/// are used. Always on outside tests, which compare them with the plain graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrites {
    On,
    #[cfg_attr(not(test), allow(dead_code))]
    Off,
}

/// A convolution with fewer output channels than this and a kernel taller than one row goes
/// through `conv_by_rows`.
const NARROW_OUTPUT_CHANNELS: i64 = 8;

fn is_narrow(weight: &Tensor) -> bool {
    let size = weight.size();
    size[0] < NARROW_OUTPUT_CHANNELS && size[2] > 1
}

/// At inference a narrow convolution (see `is_narrow`) with at most this many input channels
/// goes through `conv_space_to_depth` instead of `conv_by_rows`.
const SPACE_TO_DEPTH_MAX_INPUT_CHANNELS: i64 = 8;

/// Whether `conv_space_to_depth` applies: stride 1, a narrow odd kernel, few input channels and
/// an input of even height and width.
fn space_to_depth_fits(x: &Tensor, weight: &Tensor, stride: i64) -> bool {
    let (input, size) = (x.size(), weight.size());
    stride == 1
        && is_narrow(weight)
        && size[1] <= SPACE_TO_DEPTH_MAX_INPUT_CHANNELS
        && size[2] == size[3]
        && size[2] % 2 == 1
        && input.len() == 4
        && input[2] % 2 == 0
        && input[3] % 2 == 0
}

/// A stride-1, unpadded `k×k` convolution (k odd) with few input and output channels (the 9×9
/// 8→3 and 4→3 output layers) on the 2×2 space-to-depth form of its input: `C` channels at
/// `H×W` become `4C` at `H/2×W/2` (`pixel_unshuffle`), the kernel becomes a `(k+1)/2`-square
/// one with `4·O` outputs, one block per output phase, and `pixel_shuffle` puts the phases back.
/// Output pixel `(2i + a, 2j + b)` sees input rows `2i + a + u`, `u < k`, which are rows
/// `i + d` of phase `p` with `2d + p = a + u`: the new kernel holds `W[o, c, 2d + p - a, ...]`,
/// zero outside `0..k`. A quarter more multiply-adds, but 4·O outputs and 4·C inputs let oneDNN
/// fill its vectors: a 9×9 8→3 conv at 512², one thread, 49 → 41 ms (46 ms as `conv_by_rows`).
/// Equal up to float rounding.
fn conv_space_to_depth(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let size = weight.size();
    let (out_channels, in_channels, k) = (size[0], size[1], size[2]);
    let m = k / 2 + 1;
    // Kernel rows and columns at indices u + 1, so that for phase a the rows 2d + p + 1 - a,
    // d < m, p < 2, are one window of 2m rows, and likewise the columns.
    let padded = weight.constant_pad_nd([1, 1, 1, 1]);
    let phases: Vec<Tensor> = [(0, 0), (0, 1), (1, 0), (1, 1)]
        .iter()
        .map(|&(a, b)| {
            padded
                .narrow(2, 1 - a, 2 * m)
                .narrow(3, 1 - b, 2 * m)
                .reshape([out_channels, in_channels, m, 2, m, 2])
                // [O, C, d, p, e, q] → [O, C, p, q, d, e]: input channel c·4 + 2p + q, as
                // pixel_unshuffle orders them.
                .permute([0, 1, 3, 5, 2, 4])
                .reshape([out_channels, 4 * in_channels, m, m])
        })
        .collect();
    // Output channel o·4 + 2a + b, as pixel_shuffle reads them.
    let kernel = Tensor::stack(&phases, 1).reshape([4 * out_channels, 4 * in_channels, m, m]);
    let bias = bias.map(|b| {
        b.view([out_channels, 1])
            .expand([out_channels, 4], false)
            .reshape([-1])
    });
    x.pixel_unshuffle(2)
        .conv2d(&kernel, bias.as_ref(), [1, 1], [0, 0], [1, 1], 1)
        .pixel_shuffle(2)
}

/// A stride-1, unpadded `k×k` convolution with few output channels (the 3-channel output layer)
/// as one `1×k` convolution with `k · out_channels` outputs, one block per kernel row, followed
/// by the sum of the `k` blocks shifted by their row. Same multiply-adds, but oneDNN vectorises
/// over output channels, and the direct form keeps 3 of 16 lanes busy. The shifted blocks are
/// one strided view of the `1×k` output (block `r` at row offset `r`), so the sum is a single
/// reduction and its gradient a single strided copy. A 9×9 32→3 conv at 128², batch 4: 16.5 →
/// 5.5 ms forward, 53 → 20 ms forward and backward. Equal up to float rounding.
fn conv_by_rows(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let size = weight.size();
    let (out_channels, in_channels, rows, cols) = (size[0], size[1], size[2], size[3]);
    // [O, I, k, k] → [k·O, I, 1, k], in (kernel row, output channel) order.
    let row_kernels =
        weight
            .permute([2, 0, 1, 3])
            .reshape([rows * out_channels, in_channels, 1, cols]);
    let z = x.conv2d(&row_kernels, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1);
    let (batch, out_height, out_width) = (z.size()[0], x.size()[2] - rows + 1, z.size()[3]);
    let stride = z.stride();
    // shifted[b, r, o, i, j] = z[b, r·O + o, i + r, j]: each element of `z` at most once.
    let shifted = z.as_strided(
        [batch, rows, out_channels, out_height, out_width],
        [
            stride[0],
            out_channels * stride[1] + stride[2],
            stride[1],
            stride[2],
            stride[3],
        ],
        None::<i64>, // keeps the storage offset of `z`
    );
    let y = shifted.sum_dim_intlist([1i64].as_slice(), false, z.kind());
    match bias {
        Some(bias) => y + bias.view([1, out_channels, 1, 1]),
        None => y,
    }
}

/// `path / "res1" / "conv1"` from `"res1.conv1"` (tch path segments cannot contain dots).
fn dotted<'a>(path: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut segments = name.split('.');
    let first = segments.next().unwrap_or_default();
    segments.fold(path / first, |p, segment| p / segment)
}

fn affine_normalise(
    y: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Tensor {
    let scale = gamma.view([1, -1, 1, 1]) * (var.to_kind(y.kind()) + eps).rsqrt();
    (y - mean.to_kind(y.kind())) * scale + beta.view([1, -1, 1, 1])
}

/// Whether a 4-d tensor has NHWC strides.
fn is_channels_last(x: &Tensor) -> bool {
    let stride = x.stride();
    stride.len() == 4 && stride[1] == 1 && stride[3] > 1
}

/// Whether autograd records operations on this thread. tch has no getter: setting the mode
/// returns the previous one, which is put straight back.
fn grad_mode_enabled() -> bool {
    // SAFETY: plain calls into ATen's thread-local grad mode; the state is restored at once.
    unsafe {
        let previous = torch_sys::at_grad_set_enabled(1);
        torch_sys::at_grad_set_enabled(previous);
        previous != 0
    }
}

/// `conv3x3(pad1(upsample_nearest_x2(x)))` without building the upsampled tensor, as four
/// 2×2 convolutions on `x`, one per output phase. Output pixel `(2i + a, 2j + b)` sees upsampled
/// rows `2i + a - 1 ..= 2i + a + 1`, which are rows `i - 1, i, i` of `x` for `a = 0` and
/// `i, i, i + 1` for `a = 1`: the 3×3 kernel folds into a 2×2 one per phase (16 instead of 36
/// multiply-adds per input pixel and channel pair). Padding the upsampled tensor by one pixel
/// (reflect: its row -1 is its row 1, a copy of row 0 of `x`; zero: zeros) equals padding `x`
/// by one (replicate; zero). Equal to the plain path up to float rounding.
fn upsample_conv_sub_pixel(x: &Tensor, conv: &nn::Conv2D, padding: Padding) -> Tensor {
    let size = x.size();
    let (batch, height, width) = (size[0], size[2], size[3]);
    let weight = conv
        .ws
        .to_kind(crate::precision::accumulation_kind(conv.ws.kind()));
    let out_channels = weight.size()[0];
    // Rows (dim 2) or columns (dim 3) of the 3×3 kernel summed into two, for phase 0 or 1.
    let fold = |w: &Tensor, dim: i64, phase: i64| {
        let (k0, k1, k2) = (
            w.narrow(dim, 0, 1),
            w.narrow(dim, 1, 1),
            w.narrow(dim, 2, 1),
        );
        if phase == 0 {
            Tensor::cat(&[k0, k1 + k2], dim)
        } else {
            Tensor::cat(&[k0 + k1, k2], dim)
        }
    };
    let phases = [(0, 0), (0, 1), (1, 0), (1, 1)];
    let kernels: Vec<Tensor> = phases
        .iter()
        .map(|&(a, b)| fold(&fold(&weight, 2, a), 3, b))
        .collect();
    let kernels = Tensor::cat(&kernels, 0).to_kind(conv.ws.kind());
    let bias = conv.bs.as_ref().map(|b| b.repeat([4]));
    let padded = match padding {
        Padding::Reflect => x.replication_pad2d([1, 1, 1, 1]),
        Padding::Zero => x.constant_pad_nd([1, 1, 1, 1]),
    };
    // All four phases at every position of the (H + 1) × (W + 1) grid; phase (a, b) of output
    // pixel (i, j) sits at (i + a, j + b).
    let y = padded.conv2d(&kernels, bias.as_ref(), [1, 1], [0, 0], [1, 1], 1);
    let channels_last = y.stride()[1] == 1;
    let out = if channels_last {
        Tensor::empty(
            [batch, height, 2, width, 2, out_channels],
            (y.kind(), y.device()),
        )
    } else {
        Tensor::empty(
            [batch, out_channels, height, 2, width, 2],
            (y.kind(), y.device()),
        )
    };
    for (p, &(a, b)) in phases.iter().enumerate() {
        let phase = y
            .narrow(1, p as i64 * out_channels, out_channels)
            .narrow(2, a, height)
            .narrow(3, b, width);
        let mut target = if channels_last {
            out.select(2, a).select(3, b).permute([0, 3, 1, 2])
        } else {
            out.select(3, a).select(4, b)
        };
        target.copy_(&phase);
    }
    if channels_last {
        out.view([batch, 2 * height, 2 * width, out_channels])
            .permute([0, 3, 1, 2])
    } else {
        out.view([batch, out_channels, 2 * height, 2 * width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
        let diff = (actual - expected).norm().double_value(&[]);
        diff / expected.norm().double_value(&[])
    }

    /// A network of `spec` whose every variable is perturbed, so every layer's output matters.
    fn noisy_net(spec: &NetSpec) -> (nn::VarStore, TransformerNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = TransformerNet::new(&vs.root(), spec).unwrap();
        let mut variables: Vec<_> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (_, var) in &mut variables {
                let noise = var.randn_like() * 0.2;
                let _ = var.g_add_(&noise);
            }
        });
        (vs, net)
    }

    /// The rewritten layers (sub-pixel upsampling, row-split narrow convs) and the inference
    /// path (in-place ops, input scale folded into the first conv) against the plain graph: f32
    /// outputs, and in f64 the gradients of every weight, of the input and of the style vector,
    /// for both paddings, both memory layouts, odd sizes, a conditional-norm
    /// network and one conditioned on a style vector.
    #[test]
    fn rewrites_and_inference_path_match_the_plain_graph() {
        tch::manual_seed(7);
        let specs = [
            NetSpec::johnson_half(),
            NetSpec {
                padding: Padding::Zero,
                ..NetSpec::johnson_half()
            },
            NetSpec::multistyle26().with_styles(3),
            NetSpec::arbitrary(),
        ];
        for spec in specs {
            let (vs, net) = noisy_net(&spec);
            let weights = vec![1.0 / spec.n_styles as f64; spec.n_styles];
            let vector = spec
                .style_vector_dim()
                .map(|d| Tensor::randn([d as i64], (Kind::Float, Device::Cpu)) * 0.3);
            let params = |vector: Option<&Tensor>| match vector {
                Some(v) => net.vector_style_params(v).unwrap(),
                None => net.style_params(&weights).unwrap(),
            };
            let input = Tensor::rand([2, 3, 37, 50], (Kind::Float, Device::Cpu)) * 255.0;
            let original = input.copy();
            let layouts = |x: &Tensor| [x.shallow_clone(), crate::precision::to_channels_last(x)];
            // f32, as the network runs: the rewritten graph and the inference path give the plain
            // graph's output.
            for layout in layouts(&input) {
                let v = vector.as_ref();
                let run = |rewrites| {
                    tch::no_grad(|| net.run(&layout, &params(v), NormStats::Own, rewrites)).unwrap()
                };
                let expected = run(Rewrites::Off);
                let error = relative_error(&run(Rewrites::On), &expected);
                assert!(
                    error < 1e-5,
                    "{spec:?}: rewritten output, relative error {error:e}"
                );
                let inferred = tch::no_grad(|| net.forward(&layout, &params(v))).unwrap();
                assert!(!inferred.requires_grad());
                let error = relative_error(&inferred, &expected);
                assert!(
                    error < 1e-5,
                    "{spec:?}: inference, relative error {error:e}"
                );
            }
            // The input is never modified (scaling and in-place ops work on copies).
            assert_eq!(relative_error(&input, &original), 0.0);

            // Gradients in f64. In f32 the input gradient of this deep random network moves by up
            // to 1e-2 between equally valid kernel choices (CI's CPU picks others than this one's),
            // which would hide a wrong rewrite; in f64 rounding is far below what one would change.
            let mut vs = vs;
            vs.set_kind(Kind::Double);
            let input = input.to_kind(Kind::Double);
            let vector = vector.map(|v| v.to_kind(Kind::Double));
            // A fixed random projection of the output, so every output pixel gets a gradient.
            let probe = Tensor::randn([2, 3, 37, 50], (Kind::Double, Device::Cpu));
            // Analytically zero gradients, where both paths give rounding noise, not comparable:
            // a conv bias right before an instance norm (the norm subtracts the mean), and the β
            // of a residual block's second norm (a per-channel constant on the residual stream
            // reaches only normed convs).
            let structure = spec.structure();
            let mut zero_gradient: Vec<String> = structure
                .layers()
                .into_iter()
                .filter(|layer| layer.norm.is_some())
                .map(|layer| format!("{}.conv2d.bias", layer.name))
                .collect();
            for block in &structure.residual {
                let norm = block.second.norm.as_ref().unwrap();
                zero_gradient.extend(
                    norm.variables()
                        .into_iter()
                        .map(|(name, _)| name)
                        .filter(|name| name.ends_with(".bias") && !name.contains(".gamma.")),
                );
                if let Some(name) = norm
                    .variables()
                    .into_iter()
                    .map(|(name, _)| name)
                    .find(|name| name.ends_with(".beta.weight"))
                {
                    zero_gradient.push(name);
                }
            }
            let gradients = |rewrites: Rewrites, layout: &Tensor| {
                let x = layout.detach().set_requires_grad(true);
                let v = vector.as_ref().map(|v| v.detach().set_requires_grad(true));
                let y = net
                    .run(&x, &params(v.as_ref()), NormStats::Own, rewrites)
                    .unwrap();
                for mut var in vs.trainable_variables() {
                    var.zero_grad();
                }
                (&y * &probe).sum(Kind::Double).backward();
                let mut grads = vec![("input".to_string(), x.grad())];
                grads.extend(v.map(|v| ("style vector".to_string(), v.grad())));
                let mut variables: Vec<_> = vs.variables().into_iter().collect();
                variables.sort_by(|a, b| a.0.cmp(&b.0));
                variables.retain(|(name, _)| !zero_gradient.contains(name));
                grads.extend(variables.iter().map(|(name, v)| (name.clone(), v.grad())));
                (y.detach(), grads)
            };
            for layout in layouts(&input) {
                let (expected, expected_grads) = gradients(Rewrites::Off, &layout);
                let (rewritten, rewritten_grads) = gradients(Rewrites::On, &layout);
                let error = relative_error(&rewritten, &expected);
                assert!(
                    error < 1e-10,
                    "{spec:?}: rewritten f64 output, relative error {error:e}"
                );
                assert_eq!(rewritten_grads.len(), expected_grads.len());
                for ((name, actual), (_, expected)) in rewritten_grads.iter().zip(&expected_grads) {
                    let error = relative_error(actual, expected);
                    assert!(
                        error < 1e-8,
                        "{spec:?}: gradient of {name}, relative error {error:e}"
                    );
                }
            }
        }
    }

    /// The arbitrary network reads its norms from the vector (two vectors, two pictures), and
    /// each way of asking for style parameters refuses the networks it does not fit.
    #[test]
    fn style_vectors_condition_the_arbitrary_network_only() {
        tch::manual_seed(3);
        let (mut vs, arbitrary) = noisy_net(&NetSpec::arbitrary());
        let input = Tensor::rand([1, 3, 20, 29], (Kind::Float, Device::Cpu)) * 255.0;
        let stylize = |v: &Tensor| {
            let params = arbitrary.vector_style_params(v).unwrap();
            tch::no_grad(|| arbitrary.forward(&input, &params)).unwrap()
        };
        let a = Tensor::randn([100], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([100], (Kind::Float, Device::Cpu));
        let (out_a, out_b) = (stylize(&a), stylize(&b));
        assert_eq!(out_a.size(), vec![1, 3, 20, 29]);
        assert!(relative_error(&out_a, &out_b) > 1e-2);
        // Any float kind of vector gives the same γ/β.
        assert_eq!(
            relative_error(&stylize(&a.to_kind(Kind::Double)), &out_a),
            0.0
        );

        let refused = |result: Result<StyleParams>, wanted: &str| match result {
            Err(Error::InvalidStyle(message)) => {
                assert!(message.contains(wanted), "{message}")
            }
            other => panic!("expected InvalidStyle containing `{wanted}`, got {other:?}"),
        };
        let short = Tensor::zeros([99], (Kind::Float, Device::Cpu));
        refused(arbitrary.vector_style_params(&short), "takes 100 values");
        let batched = Tensor::zeros([1, 100], (Kind::Float, Device::Cpu));
        refused(arbitrary.vector_style_params(&batched), "takes 100 values");
        let nan = Tensor::full([100], f64::NAN, (Kind::Float, Device::Cpu));
        refused(arbitrary.vector_style_params(&nan), "non-finite");
        refused(arbitrary.style_params(&[1.0]), "takes a style vector");
        refused(arbitrary.single_style_params(0), "takes a style vector");

        // In bf16, γ/β come out in the network's kind, and the picture stays close.
        vs.set_kind(Kind::BFloat16);
        let params = arbitrary.vector_style_params(&a).unwrap();
        let input_bf16 = input.to_kind(Kind::BFloat16);
        let out_bf16 = tch::no_grad(|| arbitrary.forward(&input_bf16, &params)).unwrap();
        assert_eq!(out_bf16.kind(), Kind::BFloat16);
        let error = relative_error(&out_bf16.to_kind(Kind::Float), &out_a);
        assert!(error < 3e-2, "bf16: relative error {error:e}");

        let (_vs, johnson) = noisy_net(&NetSpec::johnson_half());
        refused(
            johnson.vector_style_params(&a),
            "not conditioned on a style vector",
        );
        // Parameters of one network do not run another.
        let params = arbitrary.vector_style_params(&a).unwrap();
        match johnson.forward(&input, &params) {
            Err(Error::InvalidStyle(message)) => assert!(message.contains("another network")),
            other => panic!("expected InvalidStyle, got {other:?}"),
        }
    }
}
