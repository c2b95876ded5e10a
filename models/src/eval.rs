//! The quality yardstick: the perceptual losses of a stylization, on a fixed VGG-19 with fixed
//! layers and weights, so numbers from any source (a trained network, the built-in one, the
//! optimization, a folder of images made elsewhere) compare, whatever flags trained them.
//!
//! The losses of Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural
//! Networks" (CVPR 2016), in the conventions of `loss` (Johnson et al. 2016, pytorch/examples):
//! the VGG-19 of `make vgg` (Caffe weights, BGR minus the mean pixel, applied by `Vgg`), content
//! at relu4_2, style at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 with equal layer
//! weights, Gram matrices divided by c·h·w, every squared error a mean. Each term is reported
//! multiplied by its weight below, so the total is their sum, and it is exactly the objective
//! `atelier optimize` minimises with its defaults.
//!
//! Sizes are part of the yardstick: the photo is compared at the stylized image's size, and the
//! style picture is resized so that its longer side equals the stylized image's longer side
//! (style scale 1, as neural-style defines it).

use image::imageops::FilterType;
use image::DynamicImage;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::loss;
use crate::vgg::{Tap, Vgg, VggKind};

/// The content layer.
pub const CONTENT_TAP: Tap = Tap::Relu4_2;
/// The style layers, each weighted 1.
pub const STYLE_TAPS: [Tap; 5] = [
    Tap::Relu1_1,
    Tap::Relu2_1,
    Tap::Relu3_1,
    Tap::Relu4_1,
    Tap::Relu5_1,
];
/// Weight of the content term (mean squared relu4_2 difference). With the style weight, that of
/// jcjohnson/neural-style, whose losses have these very conventions (Gram / c·h·w, mean
/// squared errors on 0-255 Caffe input).
pub const CONTENT_WEIGHT: f64 = 5.0;
/// Weight of each style layer's term (mean squared Gram difference).
pub const STYLE_WEIGHT: f64 = 100.0;
/// Weight of the total-variation term (mean squared neighbour difference, pixels in [0, 255]):
/// enough to keep the optimization from high-frequency noise, small beside the others.
pub const TV_WEIGHT: f64 = 1.0;

/// `image` resized (Lanczos) so that its longer side is `side` pixels, aspect kept.
pub fn resize_longer_side(image: &DynamicImage, side: u32) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    let longer = width.max(height).max(1);
    if longer == side {
        return image.clone();
    }
    let scale = side as f64 / longer as f64;
    let new_width = ((width as f64 * scale).round() as u32).max(1);
    let new_height = ((height as f64 * scale).round() as u32).max(1);
    image.resize_exact(new_width, new_height, FilterType::Lanczos3)
}

/// The style picture as the yardstick sees it next to a stylized image of `width`x`height`.
pub fn style_for(style: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    resize_longer_side(style, width.max(height))
}

/// The photo as the yardstick compares it with a stylized image of `width`x`height`.
pub fn photo_for(photo: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    if (photo.width(), photo.height()) == (width, height) {
        return photo.clone();
    }
    photo.resize_exact(width, height, FilterType::Lanczos3)
}

/// The losses of one stylized image, each already multiplied by its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub content: f64,
    /// One per `STYLE_TAPS` entry, in that order.
    pub style_layers: Vec<f64>,
    pub tv: f64,
}

impl Measurement {
    /// The style terms summed.
    pub fn style(&self) -> f64 {
        self.style_layers.iter().sum()
    }

    /// content + style + tv: the optimization's objective.
    pub fn total(&self) -> f64 {
        self.content + self.style() + self.tv
    }
}

/// The VGG-19 of the yardstick, with the style target it measures against.
pub struct Yardstick {
    vgg: Vgg,
    device: Device,
}

/// The Gram matrices of a style picture at the yardstick's layers.
pub struct StyleTarget {
    grams: Vec<Tensor>,
}

impl Yardstick {
    /// `vgg` must be the VGG-19 (the numbers are defined on it), loaded on `device`.
    pub fn new(vgg: Vgg, device: Device) -> Result<Self> {
        if vgg.kind() != VggKind::Vgg19 {
            return Err(Error::InvalidSpec(format!(
                "the quality yardstick is defined on vgg19, not {}",
                vgg.kind()
            )));
        }
        Ok(Self { vgg, device })
    }

    /// The target of a style picture `[3, H, W]` (RGB [0, 255]), already sized: by `style_for`
    /// for `atelier eval`, at the training's `--style-size` for validation.
    pub fn style_target(&self, style: &Tensor) -> Result<StyleTarget> {
        let _guard = tch::no_grad_guard();
        let features = self
            .vgg
            .features(&batch_of(style, self.device()), &STYLE_TAPS)?;
        Ok(StyleTarget {
            grams: features.iter().map(loss::gram).collect(),
        })
    }

    /// The losses of `stylized` against `photo` (both `[3, H, W]`, same size, RGB [0, 255])
    /// and `target`.
    pub fn measure(
        &self,
        photo: &Tensor,
        stylized: &Tensor,
        target: &StyleTarget,
    ) -> Result<Measurement> {
        if photo.size() != stylized.size() {
            return Err(Error::Decode(format!(
                "the photo is {:?} and the stylized image {:?}; they must match",
                photo.size(),
                stylized.size()
            )));
        }
        let _guard = tch::no_grad_guard();
        let device = self.device();
        let photo = batch_of(photo, device);
        let stylized = batch_of(stylized, device);
        let content_target = self.vgg.features(&photo, &[CONTENT_TAP])?;
        let mut taps = vec![CONTENT_TAP];
        taps.extend(STYLE_TAPS);
        let features = self.vgg.features(&stylized, &taps)?;
        let content = loss::content_loss(&features[..1], &content_target) * CONTENT_WEIGHT;
        let style_layers = features[1..]
            .iter()
            .zip(&target.grams)
            .map(|(feature, gram)| {
                scalar(
                    &(loss::style_loss(
                        &[feature.shallow_clone()],
                        &[gram.shallow_clone()],
                        &[1.0],
                    ) * STYLE_WEIGHT),
                )
            })
            .collect::<Result<Vec<f64>>>()?;
        let tv = loss::tv_loss(&stylized) * TV_WEIGHT;
        Ok(Measurement {
            content: scalar(&content)?,
            style_layers,
            tv: scalar(&tv)?,
        })
    }

    fn device(&self) -> Device {
        self.device
    }
}

fn batch_of(image: &Tensor, device: Device) -> Tensor {
    image.to_device(device).to_kind(Kind::Float).unsqueeze(0)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(f64::try_from(t.to_kind(Kind::Double))?)
}
