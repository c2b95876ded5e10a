//! The architecture spec of the style transformer: everything needed to rebuild the network
//! from a model file's header. One network type, described by data; presets are values.
//!
//! `NetSpec` is the compact form stored as JSON in model files; `NetSpec::structure` expands it
//! into the layers (`Structure`), and everything else reads that: the network's construction and
//! forward pass, the variable names and shapes, the FLOP count.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the network's last layer maps to pixels in [0, 255].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputActivation {
    /// Raw conv output, already on the [0, 255] scale (pytorch/examples; clamped at save time).
    None,
    /// `255 · sigmoid(x)` (Magenta's networks).
    Sigmoid,
    /// `127.5 · (tanh(x) + 1)`.
    Tanh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// Nearest-neighbour ×2 followed by a 3×3 conv (Odena et al. 2016: no checkerboard).
    Nearest,
    /// Bilinear ×2 (align_corners = false) followed by a 3×3 conv.
    Bilinear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Reflection padding of k/2 before every conv (pytorch/examples, Magenta).
    Reflect,
    /// Zero padding of k/2.
    Zero,
}

/// The style transformer of Johnson et al. 2016, generalised just enough to also express the
/// Dumoulin et al. 2017 multi-style network and the Ghiasi et al. 2017 arbitrary-style one.
///
/// Variable names follow pytorch/examples: `conv1..3` with norms `in1..3` (downsampling),
/// `res1..N.{conv1,in1,conv2,in2}` (residual blocks), `deconv1..2` with `in4`, `in5`
/// (upsampling) and `deconv3` with `in6` (output). A conv's variables are
/// `{layer}.conv2d.weight` `[out, in, k, k]` and, with a bias, `{layer}.conv2d.bias` `[out]`.
/// A norm's variables depend on how it is conditioned (`Conditioning`):
/// - one style: `{norm}.weight` and `{norm}.bias`, γ and β, `[C]`;
/// - `n_styles > 1` (conditional instance norm): the same names, one row per style, `[n, C]`;
/// - a style vector of dimension D (`style_vector_dim`, `n_styles` 0): γ = W_γ·v + b_γ and
///   β = W_β·v + b_β as `{norm}.gamma.weight` `[C, D]`, `{norm}.gamma.bias` `[C]`,
///   `{norm}.beta.weight` `[C, D]`, `{norm}.beta.bias` `[C]` (the names of two `nn.Linear`s).
///
/// Fields added after the first model files have serde defaults and are left out of the JSON
/// when they hold them, so older headers parse to the same network and write back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Output channels of conv1 (k×k s1), conv2 (3×3 s2), conv3 (3×3 s2); residual blocks
    /// keep conv3's width.
    pub down_channels: [i64; 3],
    /// Number of residual blocks.
    pub res_blocks: usize,
    /// Output channels of deconv1 and deconv2 (upsample ×2, 3×3 conv each).
    pub up_channels: [i64; 2],
    /// Kernel size of the first and last conv.
    pub outer_kernel: i64,
    /// Number of γ/β rows per norm: 1 is plain affine instance norm, more is conditional
    /// instance norm with one row per style, 0 when the norms are computed from a style vector.
    pub n_styles: usize,
    pub upsample: Upsample,
    pub padding: Padding,
    pub norm_eps: f64,
    /// Whether convs carry a bias (see `down_norm` for the exception).
    pub conv_bias: bool,
    /// Whether the last conv is followed by a (conditional) instance norm, `in6`.
    pub norm_after_last: bool,
    pub output: OutputActivation,
    /// What the first conv sees per unit of the [0, 255] pixel scale: 1 for networks trained on
    /// 0–255 input, 1/255 for networks trained on [0, 1].
    pub input_scale: f64,
    /// Whether conv1..conv3 are followed by norms `in1..in3`. Without them those convs always
    /// carry a bias, whatever `conv_bias` says (Magenta's arbitrary network: a bias exactly
    /// where no norm follows).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub down_norm: bool,
    /// The dimension of the style vector the norms' γ and β are computed from, if they are
    /// (Ghiasi et al. 2017); `n_styles` is then 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style_vector_dim: Option<usize>,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Default for NetSpec {
    fn default() -> Self {
        Self::johnson()
    }
}

/// The built-in architectures, as `--arch` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Johnson et al. 2016, as in pytorch/examples `fast_neural_style`.
    Johnson,
    /// Half the widths.
    JohnsonHalf,
    /// Magenta's 26-style network (Dumoulin et al. 2017).
    Multistyle26,
    /// Magenta's arbitrary-style transformer (Ghiasi et al. 2017), conditioned on a 100-d
    /// style vector.
    Arbitrary,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::Johnson,
        Preset::JohnsonHalf,
        Preset::Multistyle26,
        Preset::Arbitrary,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Preset::Johnson => "johnson",
            Preset::JohnsonHalf => "johnson-half",
            Preset::Multistyle26 => "multistyle26",
            Preset::Arbitrary => "arbitrary",
        }
    }

    pub fn spec(self) -> NetSpec {
        match self {
            Preset::Johnson => NetSpec::johnson(),
            Preset::JohnsonHalf => NetSpec::johnson_half(),
            Preset::Multistyle26 => NetSpec::multistyle26(),
            Preset::Arbitrary => NetSpec::arbitrary(),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|preset| preset.name() == name)
            .ok_or_else(|| Error::UnknownPreset {
                name: name.to_string(),
                known: PRESETS.join(", "),
            })
    }
}

/// Names of the presets `NetSpec::preset` accepts.
pub const PRESETS: [&str; 4] = [
    Preset::ALL[0].name(),
    Preset::ALL[1].name(),
    Preset::ALL[2].name(),
    Preset::ALL[3].name(),
];

/// Width of the arbitrary network's style vector (the predictor's bottleneck).
pub const ARBITRARY_STYLE_VECTOR_DIM: usize = 100;

impl NetSpec {
    /// Johnson et al. 2016 as laid out in pytorch/examples `fast_neural_style`.
    pub fn johnson() -> Self {
        Self {
            down_channels: [32, 64, 128],
            res_blocks: 5,
            up_channels: [64, 32],
            outer_kernel: 9,
            n_styles: 1,
            upsample: Upsample::Nearest,
            padding: Padding::Reflect,
            norm_eps: 1e-5,
            conv_bias: true,
            norm_after_last: false,
            output: OutputActivation::None,
            input_scale: 1.0,
            down_norm: true,
            style_vector_dim: None,
        }
    }

    /// Half the widths, as in Johnson's instance-norm model releases.
    pub fn johnson_half() -> Self {
        Self {
            down_channels: [16, 32, 64],
            up_channels: [32, 16],
            ..Self::johnson()
        }
    }

    /// The 26-style network of Magenta's Android demo (Dumoulin et al. 2017), as shipped in
    /// `multistyle26.onnx`.
    pub fn multistyle26() -> Self {
        Self {
            down_channels: [32, 32, 32],
            res_blocks: 6,
            up_channels: [8, 4],
            n_styles: 26,
            conv_bias: false,
            norm_after_last: true,
            output: OutputActivation::Sigmoid,
            input_scale: 1.0 / 255.0,
            ..Self::johnson()
        }
    }

    /// The transformer of Magenta's arbitrary image stylization (Ghiasi, Lee, Kudlur, Dumoulin,
    /// Shlens 2017): widths 8/16/32, unnormalised downsampling convs with biases, five residual
    /// blocks, every later norm conditioned on a 100-d style vector, sigmoid output, input on
    /// [0, 1].
    pub fn arbitrary() -> Self {
        Self {
            down_channels: [8, 16, 32],
            res_blocks: 5,
            up_channels: [16, 8],
            n_styles: 0,
            conv_bias: false,
            norm_after_last: true,
            output: OutputActivation::Sigmoid,
            input_scale: 1.0 / 255.0,
            down_norm: false,
            style_vector_dim: Some(ARBITRARY_STYLE_VECTOR_DIM),
            ..Self::johnson()
        }
    }

    pub fn preset(name: &str) -> Result<Self> {
        name.parse::<Preset>().map(Preset::spec)
    }

    /// With `n` styles (conditional instance norm when n > 1).
    pub fn with_styles(self, n_styles: usize) -> Self {
        Self { n_styles, ..self }
    }

    /// The dimension of the style vector the norms are computed from, for a network conditioned
    /// on one (`TransformerNet::vector_style_params`).
    pub fn style_vector_dim(&self) -> Option<usize> {
        self.style_vector_dim
    }

    /// How every norm of the network gets its γ and β.
    pub fn conditioning(&self) -> Conditioning {
        match self.style_vector_dim {
            Some(dim) => Conditioning::Vector { dim },
            None if self.n_styles == 1 => Conditioning::Fixed,
            None => Conditioning::PerStyle {
                styles: self.n_styles,
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let widths = self.down_channels.iter().chain(self.up_channels.iter());
        if widths.clone().any(|&c| c <= 0) {
            return Err(Error::InvalidSpec("channel widths must be positive".into()));
        }
        match (self.n_styles, self.style_vector_dim) {
            (0, None) => {
                return Err(Error::InvalidSpec(
                    "a network needs at least one style".into(),
                ))
            }
            (_, Some(0)) => {
                return Err(Error::InvalidSpec(
                    "the style vector dimension must be positive".into(),
                ))
            }
            (n, Some(_)) if n > 0 => {
                return Err(Error::InvalidSpec(format!(
                    "a network conditioned on a style vector has no per-style rows \
                     (n_styles is {n}, must be 0)"
                )))
            }
            _ => {}
        }
        if self.outer_kernel <= 0 || self.outer_kernel % 2 == 0 {
            return Err(Error::InvalidSpec(
                "outer kernel must be odd and positive".into(),
            ));
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.norm_eps) || !positive(self.input_scale) {
            return Err(Error::InvalidSpec(
                "norm_eps and input_scale must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The network layer by layer: the single place that derives the layout from the spec.
    pub fn structure(&self) -> Structure {
        let [d1, d2, d3] = self.down_channels;
        let [u1, u2] = self.up_channels;
        let k = self.outer_kernel;
        let conditioning = self.conditioning();
        let layer = |name: &str, scale, kernel, channels: (i64, i64), norm: Option<String>| {
            let (in_channels, out_channels) = channels;
            Layer {
                name: name.to_string(),
                scale,
                kernel,
                padding: self.padding,
                in_channels,
                out_channels,
                bias: self.conv_bias,
                norm: norm.map(|name| Norm {
                    name,
                    channels: out_channels,
                    eps: self.norm_eps,
                    conditioning,
                }),
                activation: Activation::Relu,
            }
        };
        let down_norm = |name: &str| self.down_norm.then(|| name.to_string());
        let down = [
            layer("conv1", Scale::Same, k, (3, d1), down_norm("in1")),
            layer("conv2", Scale::Down2, 3, (d1, d2), down_norm("in2")),
            layer("conv3", Scale::Down2, 3, (d2, d3), down_norm("in3")),
        ]
        .into_iter()
        .map(|layer| Layer {
            bias: layer.bias || layer.norm.is_none(),
            ..layer
        })
        .collect();
        let residual = (1..=self.res_blocks)
            .map(|block| ResidualBlock {
                first: layer(
                    &format!("res{block}.conv1"),
                    Scale::Same,
                    3,
                    (d3, d3),
                    Some(format!("res{block}.in1")),
                ),
                second: Layer {
                    activation: Activation::None,
                    ..layer(
                        &format!("res{block}.conv2"),
                        Scale::Same,
                        3,
                        (d3, d3),
                        Some(format!("res{block}.in2")),
                    )
                },
            })
            .collect();
        let up_scale = Scale::Up2(self.upsample);
        let up = vec![
            layer("deconv1", up_scale, 3, (d3, u1), Some("in4".into())),
            layer("deconv2", up_scale, 3, (u1, u2), Some("in5".into())),
        ];
        let last_norm = self.norm_after_last.then(|| "in6".to_string());
        let output = Layer {
            activation: Activation::Output(self.output),
            ..layer("deconv3", Scale::Same, k, (u2, 3), last_norm)
        };
        Structure {
            down,
            residual,
            up,
            output,
            input_scale: self.input_scale,
        }
    }

    /// Every layer in forward order (`Structure::layers`).
    pub fn layers(&self) -> Vec<Layer> {
        self.structure().layers().into_iter().cloned().collect()
    }

    /// Every variable with its shape, in a fixed order: the exact contents of a model file.
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        self.structure().variables()
    }

    /// Multiply-accumulate count per output pixel, ×2 for FLOPs (used by benchmarks).
    pub fn flops_per_pixel(&self) -> f64 {
        self.structure().flops_per_pixel()
    }
}

/// How a norm gets its γ and β.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditioning {
    /// One style: γ and β are variables `[C]`.
    Fixed,
    /// One γ/β row per style, `[styles, C]`, mixed by style weights (Dumoulin et al. 2017).
    PerStyle { styles: usize },
    /// Linear maps of a style vector of dimension `dim`: γ = W_γ·v + b_γ, β = W_β·v + b_β
    /// (Ghiasi et al. 2017).
    Vector { dim: usize },
}

/// How a layer changes the spatial size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Stride 1.
    Same,
    /// Stride 2: each side halves.
    Down2,
    /// ×2 upsampling before a stride-1 conv: each side doubles.
    Up2(Upsample),
}

impl Scale {
    pub fn stride(self) -> i64 {
        match self {
            Scale::Down2 => 2,
            Scale::Same | Scale::Up2(_) => 1,
        }
    }

    /// Output area over input area.
    pub fn area_factor(self) -> f64 {
        match self {
            Scale::Same => 1.0,
            Scale::Down2 => 0.25,
            Scale::Up2(_) => 4.0,
        }
    }
}

/// What follows a layer's conv and norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// The network's output, mapped to pixels in [0, 255].
    Output(OutputActivation),
}

/// A (conditional) instance norm: biased variance over each channel's plane, then γ·x̂ + β.
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    /// Variable prefix: `in1`, `res2.in1`, ...
    pub name: String,
    pub channels: i64,
    pub eps: f64,
    pub conditioning: Conditioning,
}

impl Norm {
    /// γ's and β's variables (see `NetSpec` for the names).
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let (name, c) = (&self.name, self.channels);
        match self.conditioning {
            Conditioning::Fixed => vec![
                (format!("{name}.weight"), vec![c]),
                (format!("{name}.bias"), vec![c]),
            ],
            Conditioning::PerStyle { styles } => vec![
                (format!("{name}.weight"), vec![styles as i64, c]),
                (format!("{name}.bias"), vec![styles as i64, c]),
            ],
            Conditioning::Vector { dim } => vec![
                (format!("{name}.gamma.weight"), vec![c, dim as i64]),
                (format!("{name}.gamma.bias"), vec![c]),
                (format!("{name}.beta.weight"), vec![c, dim as i64]),
                (format!("{name}.beta.bias"), vec![c]),
            ],
        }
    }
}

/// One conv with what surrounds it: an optional ×2 upsample before it, padding, and the norm
/// and activation after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Variable prefix of the conv: `conv1`, `res2.conv1`, `deconv3`.
    pub name: String,
    pub scale: Scale,
    /// Square kernel side; the input is padded by `kernel / 2` on each side.
    pub kernel: i64,
    pub padding: Padding,
    pub in_channels: i64,
    pub out_channels: i64,
    pub bias: bool,
    pub norm: Option<Norm>,
    pub activation: Activation,
}

impl Layer {
    pub fn stride(&self) -> i64 {
        self.scale.stride()
    }

    pub fn pad(&self) -> i64 {
        self.kernel / 2
    }

    /// The conv's weight and bias, then the norm's variables.
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let name = &self.name;
        let mut vars = vec![(
            format!("{name}.conv2d.weight"),
            vec![
                self.out_channels,
                self.in_channels,
                self.kernel,
                self.kernel,
            ],
        )];
        if self.bias {
            vars.push((format!("{name}.conv2d.bias"), vec![self.out_channels]));
        }
        if let Some(norm) = &self.norm {
            vars.extend(norm.variables());
        }
        vars
    }
}

/// `x + second(first(x))`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidualBlock {
    pub first: Layer,
    pub second: Layer,
}

/// The network as `NetSpec::structure` expands it: the input scaled by `input_scale`, then the
/// downsampling layers, the residual blocks, the upsampling layers and the output layer, in
/// that order.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    pub down: Vec<Layer>,
    pub residual: Vec<ResidualBlock>,
    pub up: Vec<Layer>,
    pub output: Layer,
    /// See `NetSpec::input_scale`.
    pub input_scale: f64,
}

impl Structure {
    /// Every layer in forward order: the order of the variables, of `StyleParams` and of
    /// recorded norm statistics.
    pub fn layers(&self) -> Vec<&Layer> {
        let mut layers: Vec<&Layer> = self.down.iter().collect();
        for block in &self.residual {
            layers.push(&block.first);
            layers.push(&block.second);
        }
        layers.extend(&self.up);
        layers.push(&self.output);
        layers
    }

    /// Every variable with its shape, layer by layer.
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        self.layers()
            .into_iter()
            .flat_map(|layer| layer.variables())
            .collect()
    }

    /// Multiply-accumulate count per output pixel, ×2 for FLOPs, of the plain graph (each conv
    /// at its own resolution relative to the output's).
    pub fn flops_per_pixel(&self) -> f64 {
        let layers = self.layers();
        let output_area: f64 = layers.iter().map(|l| l.scale.area_factor()).product();
        let mut area = 1.0 / output_area;
        layers
            .iter()
            .map(|l| {
                area *= l.scale.area_factor();
                2.0 * (l.in_channels * l.out_channels * l.kernel * l.kernel) as f64 * area
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_follow_each_layers_resolution() {
        // The counts the layer-name table gave before the structure existed.
        assert_eq!(NetSpec::johnson().flops_per_pixel(), 307_584.0);
        assert_eq!(NetSpec::multistyle26().flops_per_pixel(), 38_808.0);
        // 9x9 3->8 at full size, 3x3 8->16 at 1/4, 3x3 16->32 and ten 3x3 32->32 at 1/16,
        // 3x3 32->16 at 1/4, 3x3 16->8 and 9x9 8->3 at full size: 12528 multiply-adds.
        let arbitrary = 1944.0 + 288.0 + 288.0 + 5760.0 + 1152.0 + 1152.0 + 1944.0;
        assert_eq!(NetSpec::arbitrary().flops_per_pixel(), 2.0 * arbitrary);
    }

    #[test]
    fn every_layer_reads_its_norm_and_bias_from_the_spec() {
        let multistyle = NetSpec::multistyle26().structure();
        for layer in multistyle.layers() {
            assert!(!layer.bias, "{}", layer.name);
            let norm = layer.norm.as_ref().unwrap();
            assert_eq!(norm.conditioning, Conditioning::PerStyle { styles: 26 });
        }
        let johnson = NetSpec::johnson().structure();
        assert!(johnson.layers().iter().all(|layer| layer.bias));
        assert_eq!(johnson.output.norm, None);
        assert_eq!(
            johnson.output.activation,
            Activation::Output(OutputActivation::None)
        );
        let names: Vec<&str> = johnson
            .layers()
            .iter()
            .filter_map(|l| l.norm.as_ref().map(|n| n.name.as_str()))
            .collect();
        assert_eq!(names[..4], ["in1", "in2", "in3", "res1.in1"]);
        assert_eq!(names[names.len() - 2..], ["in4", "in5"]);
    }
}
