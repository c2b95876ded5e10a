//! The feed-forward style transformer.
//!
//! Johnson, Alahi, Li, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
//! (ECCV 2016), with instance norm (Ulyanov, Vedaldi, Lempitsky 2016) and, for several styles,
//! conditional instance norm (Dumoulin, Shlens, Kudlur, "A Learned Representation for Artistic
//! Style", ICLR 2017). Layout and variable names follow pytorch/examples `fast_neural_style`
//! (`transformer_net.py`), so its saved state dicts load unchanged. Weights: trained by
//! `atelier train`, converted by `atelier convert`, or the built-in 26-style network.

use tch::{nn, Kind, Tensor};

use crate::error::{Error, Result};
use crate::spec::{ConvLayer, NetSpec, OutputActivation, Padding, Upsample};

/// Smallest input side the network accepts: the bottleneck is 1/4 of the input, and reflection
/// padding needs at least 2 pixels there.
pub const MIN_INPUT_SIDE: i64 = 16;

/// One conv and the (conditional) instance norm after it.
#[derive(Debug)]
struct ConvNorm {
    conv: nn::Conv2D,
    pad: i64,
    /// γ and β: `[C]` for one style, `[n_styles, C]` for conditional instance norm.
    norm: Option<(Tensor, Tensor)>,
}

/// Per-layer γ/β for one style mix, computed once and reused for every image.
#[derive(Debug)]
pub struct StyleParams {
    /// One entry per conv layer, `None` where the layer has no norm.
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

#[derive(Debug)]
pub struct TransformerNet {
    spec: NetSpec,
    layers: Vec<ConvNorm>,
}

impl TransformerNet {
    /// Creates the variables under `path` (use the var store's root for state-dict names).
    pub fn new(path: &nn::Path, spec: &NetSpec) -> Result<Self> {
        spec.validate()?;
        let norm_shape = |c: i64| {
            if spec.n_styles == 1 {
                vec![c]
            } else {
                vec![spec.n_styles as i64, c]
            }
        };
        let layers = spec
            .layers()
            .iter()
            .map(|layer: &ConvLayer| {
                let config = nn::ConvConfig {
                    stride: layer.stride,
                    bias: spec.conv_bias,
                    ..Default::default()
                };
                let conv = nn::conv2d(
                    dotted(path, &layer.name) / "conv2d",
                    layer.in_channels,
                    layer.out_channels,
                    layer.kernel,
                    config,
                );
                let norm = layer.norm.as_deref().map(|name| {
                    let p = dotted(path, name);
                    let shape = norm_shape(layer.out_channels);
                    (p.ones("weight", &shape), p.zeros("bias", &shape))
                });
                ConvNorm {
                    conv,
                    pad: layer.kernel / 2,
                    norm,
                }
            })
            .collect();
        Ok(Self {
            spec: spec.clone(),
            layers,
        })
    }

    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// γ/β for a style mix. `weights` has one entry per style and is used as given (callers
    /// normalise); for a one-style network pass `&[1.0]`.
    pub fn style_params(&self, weights: &[f64]) -> Result<StyleParams> {
        let n = self.spec.n_styles;
        if weights.len() != n {
            return Err(Error::InvalidStyle(format!(
                "{} style weights given, the network has {n} styles",
                weights.len()
            )));
        }
        let norms = self
            .layers
            .iter()
            .map(|layer| {
                layer.norm.as_ref().map(|(gamma, beta)| {
                    if n == 1 {
                        (gamma.shallow_clone(), beta.shallow_clone())
                    } else {
                        let w = Tensor::from_slice(weights)
                            .to_kind(gamma.kind())
                            .to_device(gamma.device());
                        (w.matmul(gamma), w.matmul(beta))
                    }
                })
            })
            .collect();
        Ok(StyleParams { norms })
    }

    /// γ/β for exactly one style (training: each batch is paired with one style). Keeps the
    /// graph to the selected rows so only they get gradients.
    pub fn single_style_params(&self, style: usize) -> Result<StyleParams> {
        let n = self.spec.n_styles;
        if style >= n {
            return Err(Error::InvalidStyle(format!(
                "style {style} does not exist (the network has {n})"
            )));
        }
        let norms = self
            .layers
            .iter()
            .map(|layer| {
                layer.norm.as_ref().map(|(gamma, beta)| {
                    if n == 1 {
                        (gamma.shallow_clone(), beta.shallow_clone())
                    } else {
                        (gamma.get(style as i64), beta.get(style as i64))
                    }
                })
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
        mut stats: NormStats,
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
        let (pad_h, pad_w) = ((4 - height % 4) % 4, (4 - width % 4) % 4);
        let mut x = if pad_h + pad_w > 0 {
            input.reflection_pad2d([0, pad_w, 0, pad_h])
        } else {
            input.shallow_clone()
        };
        if self.spec.input_scale != 1.0 {
            x *= self.spec.input_scale;
        }
        let mut norm_index = 0;
        let mut layer = |x: &Tensor, index: usize, relu: bool, stats: &mut NormStats| {
            let y = self.conv_norm(x, index, style, stats, &mut norm_index);
            if relu {
                y.relu()
            } else {
                y
            }
        };

        x = layer(&x, 0, true, &mut stats);
        x = layer(&x, 1, true, &mut stats);
        x = layer(&x, 2, true, &mut stats);
        let n_res = self.spec.res_blocks;
        for block in 0..n_res {
            let h = layer(&x, 3 + 2 * block, true, &mut stats);
            let h = layer(&h, 4 + 2 * block, false, &mut stats);
            x = h + x;
        }
        let first_up = 3 + 2 * n_res;
        x = layer(&self.upsample(&x), first_up, true, &mut stats);
        x = layer(&self.upsample(&x), first_up + 1, true, &mut stats);
        x = layer(&x, first_up + 2, false, &mut stats);

        x = match self.spec.output {
            OutputActivation::None => x,
            OutputActivation::Sigmoid => x.sigmoid() * 255.0,
            OutputActivation::Tanh => (x.tanh() + 1.0) * 127.5,
        };
        if pad_h + pad_w > 0 {
            x = x.narrow(2, 0, height).narrow(3, 0, width);
        }
        Ok(x)
    }

    fn upsample(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let out = [size[2] * 2, size[3] * 2];
        match self.spec.upsample {
            Upsample::Nearest => x.upsample_nearest2d(out, 2.0, 2.0),
            Upsample::Bilinear => x.upsample_bilinear2d(out, false, 2.0, 2.0),
        }
    }

    fn conv_norm(
        &self,
        x: &Tensor,
        index: usize,
        style: &StyleParams,
        stats: &mut NormStats,
        norm_index: &mut usize,
    ) -> Tensor {
        let layer = &self.layers[index];
        let p = layer.pad;
        let padded = match self.spec.padding {
            Padding::Reflect => x.reflection_pad2d([p, p, p, p]),
            Padding::Zero => x.constant_pad_nd([p, p, p, p]),
        };
        let y = padded.apply(&layer.conv);
        let Some((gamma, beta)) = &style.norms[index] else {
            return y;
        };
        let eps = self.spec.norm_eps;
        let channels = gamma.size()[0];
        match stats {
            // group_norm with one group per channel is instance norm, through a fused kernel.
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

/// `path / "res1" / "conv1"` from `"res1.conv1"` (tch path segments cannot contain dots).
fn dotted<'a>(path: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut segments = name.split('.');
    let first = segments.next().unwrap_or_default();
    segments.fold(path / first, |p, segment| p / segment)
}

fn affine_normalise(y: &Tensor, mean: &Tensor, var: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
    let scale = gamma.view([1, -1, 1, 1]) * (var.to_kind(y.kind()) + eps).rsqrt();
    (y - mean.to_kind(y.kind())) * scale + beta.view([1, -1, 1, 1])
}
