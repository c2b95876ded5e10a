//! The architecture spec of the style transformer: everything needed to rebuild the network
//! from a model file's header. One network type, described by data; presets are values.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the network's last layer maps to pixels in [0, 255].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputActivation {
    /// Raw conv output, already on the [0, 255] scale (pytorch/examples; clamped at save time).
    None,
    /// `255 · sigmoid(x)` (Magenta's multi-style network).
    Sigmoid,
    /// `127.5 · (tanh(x) + 1)`.
    Tanh,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// Nearest-neighbour ×2 followed by a 3×3 conv (Odena et al. 2016: no checkerboard).
    Nearest,
    /// Bilinear ×2 (align_corners = false) followed by a 3×3 conv.
    Bilinear,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Reflection padding of k/2 before every conv (pytorch/examples, Magenta).
    Reflect,
    /// Zero padding of k/2.
    Zero,
}

/// The style transformer of Johnson et al. 2016, generalised just enough to also express the
/// Dumoulin et al. 2017 multi-style network. Variable names follow pytorch/examples:
/// `conv1..3`, `in1..3`, `res1..N.{conv1,in1,conv2,in2}`, `deconv1..3`, `in4`, `in5`, `in6`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Output channels of conv1 (9×9 s1), conv2 (3×3 s2), conv3 (3×3 s2); residual blocks
    /// keep conv3's width.
    pub down_channels: [i64; 3],
    /// Number of residual blocks.
    pub res_blocks: usize,
    /// Output channels of deconv1 and deconv2 (upsample ×2, 3×3 conv each).
    pub up_channels: [i64; 2],
    /// Kernel size of the first and last conv.
    pub outer_kernel: i64,
    /// Number of styles: 1 is plain affine instance norm, more is conditional instance norm
    /// with one γ/β row per style.
    pub n_styles: usize,
    pub upsample: Upsample,
    pub padding: Padding,
    pub norm_eps: f64,
    /// Whether convs carry a bias.
    pub conv_bias: bool,
    /// Whether the last conv is followed by a (conditional) instance norm, `in6`.
    pub norm_after_last: bool,
    pub output: OutputActivation,
    /// What the first conv sees per unit of the [0, 255] pixel scale: 1 for networks trained on
    /// 0–255 input, 1/255 for networks trained on [0, 1].
    pub input_scale: f64,
}

impl Default for NetSpec {
    fn default() -> Self {
        Self::johnson()
    }
}

/// Names of the presets `NetSpec::preset` accepts.
pub const PRESETS: [&str; 3] = ["johnson", "johnson-half", "multistyle26"];

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

    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "johnson" => Ok(Self::johnson()),
            "johnson-half" => Ok(Self::johnson_half()),
            "multistyle26" => Ok(Self::multistyle26()),
            _ => Err(Error::InvalidSpec(format!(
                "unknown architecture `{name}` (known: {})",
                PRESETS.join(", ")
            ))),
        }
    }

    /// With `n` styles (conditional instance norm when n > 1).
    pub fn with_styles(self, n_styles: usize) -> Self {
        Self { n_styles, ..self }
    }

    pub fn validate(&self) -> Result<()> {
        let widths = self.down_channels.iter().chain(self.up_channels.iter());
        if widths.clone().any(|&c| c <= 0) {
            return Err(Error::InvalidSpec("channel widths must be positive".into()));
        }
        if self.n_styles == 0 {
            return Err(Error::InvalidSpec(
                "a network needs at least one style".into(),
            ));
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

    /// Every conv layer: (variable prefix, in channels, out channels, kernel, stride, norm name).
    /// The single source of truth for the network's layout and its variable names.
    pub fn layers(&self) -> Vec<ConvLayer> {
        let [d1, d2, d3] = self.down_channels;
        let [u1, u2] = self.up_channels;
        let k = self.outer_kernel;
        let mut layers = vec![
            ConvLayer::new("conv1", 3, d1, k, 1, Some("in1")),
            ConvLayer::new("conv2", d1, d2, 3, 2, Some("in2")),
            ConvLayer::new("conv3", d2, d3, 3, 2, Some("in3")),
        ];
        for block in 1..=self.res_blocks {
            layers.push(ConvLayer::new(
                &format!("res{block}.conv1"),
                d3,
                d3,
                3,
                1,
                Some(&format!("res{block}.in1")),
            ));
            layers.push(ConvLayer::new(
                &format!("res{block}.conv2"),
                d3,
                d3,
                3,
                1,
                Some(&format!("res{block}.in2")),
            ));
        }
        layers.push(ConvLayer::new("deconv1", d3, u1, 3, 1, Some("in4")));
        layers.push(ConvLayer::new("deconv2", u1, u2, 3, 1, Some("in5")));
        let last_norm = self.norm_after_last.then_some("in6");
        layers.push(ConvLayer::new("deconv3", u2, 3, k, 1, last_norm));
        layers
    }

    /// Every variable with its shape, in a fixed order: the exact contents of a model file.
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        let norm_shape = |c: i64| {
            if self.n_styles == 1 {
                vec![c]
            } else {
                vec![self.n_styles as i64, c]
            }
        };
        let mut vars = Vec::new();
        for layer in self.layers() {
            vars.push((
                format!("{}.conv2d.weight", layer.name),
                vec![
                    layer.out_channels,
                    layer.in_channels,
                    layer.kernel,
                    layer.kernel,
                ],
            ));
            if self.conv_bias {
                vars.push((
                    format!("{}.conv2d.bias", layer.name),
                    vec![layer.out_channels],
                ));
            }
            if let Some(norm) = &layer.norm {
                vars.push((format!("{norm}.weight"), norm_shape(layer.out_channels)));
                vars.push((format!("{norm}.bias"), norm_shape(layer.out_channels)));
            }
        }
        vars
    }

    /// Multiply-accumulate count per output pixel, ×2 for FLOPs (used by benchmarks).
    pub fn flops_per_pixel(&self) -> f64 {
        self.layers()
            .iter()
            .map(|l| {
                let area = match l.name.as_str() {
                    "conv2" => 0.25,
                    "deconv1" => 0.25,
                    "deconv2" | "deconv3" | "conv1" => 1.0,
                    _ => 1.0 / 16.0,
                };
                2.0 * (l.in_channels * l.out_channels * l.kernel * l.kernel) as f64 * area
            })
            .sum()
    }
}

/// One conv of the network, with the norm that follows it (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvLayer {
    pub name: String,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    pub norm: Option<String>,
}

impl ConvLayer {
    fn new(
        name: &str,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        stride: i64,
        norm: Option<&str>,
    ) -> Self {
        Self {
            name: name.to_string(),
            in_channels,
            out_channels,
            kernel,
            stride,
            norm: norm.map(str::to_string),
        }
    }
}
