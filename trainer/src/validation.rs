//! Validation during training: photos the network never trains on, stylized every
//! `--val-every` steps and measured with the quality yardstick of `atelier eval`
//! (`models::eval`: VGG-19, content relu4_2, style relu1_1 … relu5_1), whatever losses train the
//! network, so the numbers of different runs compare.
//!
//! The photos are either a folder of their own (`--val-data`) or a few held out of the training
//! folder: evenly spaced in its sorted file list, the same for every seed, and removed from the
//! list the photo stream reads before it starts, so no batch ever holds one.

use std::path::{Path, PathBuf};

use models::eval::{Measurement, StyleTarget, Yardstick};
use models::vgg::{Vgg, VggKind};
use tch::{Device, Tensor};

use crate::error::Result;
use crate::state::Trainer;

/// Fewest photos in the training folder from which some are held out by default.
pub const MIN_PHOTOS_FOR_HOLDOUT: usize = 10;
/// Most photos held out by default.
pub const MAX_HOLDOUT: usize = 8;

/// Photos held out of a training folder of `n_photos`: one in ten, at most 8, none below 10.
pub fn default_holdout(n_photos: usize) -> usize {
    if n_photos < MIN_PHOTOS_FOR_HOLDOUT {
        0
    } else {
        (n_photos / 10).min(MAX_HOLDOUT)
    }
}

/// Splits sorted `files` into (training, held out): `n_held` files evenly spaced through the
/// list (the middle of each of `n_held` equal stretches), the rest in their order.
pub fn split(files: Vec<PathBuf>, n_held: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let n = files.len();
    let n_held = n_held.min(n);
    if n_held == 0 {
        return (files, Vec::new());
    }
    let held_indices: Vec<usize> = (0..n_held)
        .map(|i| (2 * i + 1) * n / (2 * n_held))
        .collect();
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (index, file) in files.into_iter().enumerate() {
        if held_indices.contains(&index) {
            held.push(file);
        } else {
            train.push(file);
        }
    }
    (train, held)
}

/// A validation photo: the centre `side`² square after resizing the shorter side to `side`.
pub fn load_photo(path: &Path, side: i64) -> Result<Tensor> {
    let image = crate::train::load_style_image(path, Some(side))?;
    let (height, width) = (image.size()[1], image.size()[2]);
    Ok(image
        .narrow(1, (height - side) / 2, side)
        .narrow(2, (width - side) / 2, side)
        .contiguous())
}

/// The yardstick's losses on the validation photos, averaged over photos and styles.
#[derive(Debug, Clone, PartialEq)]
pub struct ValLosses {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
    pub n_photos: usize,
}

/// What one validation produced: the losses and, per style, a grid of the stylized photos.
pub struct ValResult {
    pub losses: ValLosses,
    /// `(style name, [3, side, n·side] image)`.
    pub grids: Vec<(String, Tensor)>,
}

/// The validation photos with the yardstick and its style targets.
pub struct Validation {
    photos: Vec<Tensor>,
    yardstick: Yardstick,
    targets: Vec<StyleTarget>,
}

impl Validation {
    /// `photos` as loaded by [`load_photo`] (all the same size, the training crops' side);
    /// `vgg19` the yardstick's network; `styles` the style images `[3, H, W]` as training sees
    /// them (at `--style-size`), one per style.
    ///
    /// The targets are the training's style images, not the style resized to the photos'
    /// size as `atelier eval` does by default: the network learns the strokes at the scale it
    /// is shown them, and measured against a differently scaled style its validation loss
    /// would rise while it learns. It is `atelier eval`'s measure with the style picture given
    /// at that size instead of resized to the photo.
    pub fn new(photos: Vec<Tensor>, vgg19: Vgg, styles: &[Tensor], device: Device) -> Result<Self> {
        let yardstick = Yardstick::new(vgg19, device)?;
        let targets = styles
            .iter()
            .map(|style| Ok(yardstick.style_target(style)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            photos,
            yardstick,
            targets,
        })
    }

    pub fn n_photos(&self) -> usize {
        self.photos.len()
    }

    /// Stylizes every photo with every style of `trainer` (its f32 weights, rounded to 8-bit
    /// pixels as a saved image would be) and measures each against its style.
    pub fn run(&self, trainer: &Trainer) -> Result<ValResult> {
        let mut measurements: Vec<Measurement> = Vec::new();
        let mut per_style: Vec<Vec<Tensor>> = self.targets.iter().map(|_| Vec::new()).collect();
        for photo in &self.photos {
            let outputs = trainer.stylize(photo)?;
            for ((output, target), images) in outputs.iter().zip(&self.targets).zip(&mut per_style)
            {
                let stylized = output.round().to_device(Device::Cpu);
                measurements.push(self.yardstick.measure(photo, &stylized, target)?);
                images.push(stylized);
            }
        }
        let n = measurements.len().max(1) as f64;
        let mean = |term: fn(&Measurement) -> f64| measurements.iter().map(term).sum::<f64>() / n;
        let losses = ValLosses {
            content: mean(|m| m.content),
            style: mean(Measurement::style),
            tv: mean(|m| m.tv),
            total: mean(Measurement::total),
            n_photos: self.photos.len(),
        };
        let grids = trainer
            .config
            .style_names
            .iter()
            .cloned()
            .zip(per_style.iter().map(|images| Tensor::cat(images, 2)))
            .collect();
        Ok(ValResult { losses, grids })
    }
}

/// Where the yardstick's VGG-19 comes from: the loss network's weights when it is a VGG-19,
/// else the default VGG-19 of `make vgg`; `None` when that file is missing.
pub fn yardstick_weights(loss_net: VggKind, loss_weights: &Path) -> Option<PathBuf> {
    let path = match loss_net {
        VggKind::Vgg19 => loss_weights.to_path_buf(),
        VggKind::Vgg16 => PathBuf::from(crate::recipe::DEFAULT_VGG19_WEIGHTS),
    };
    path.exists().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("{i:03}.jpg")))
            .collect()
    }

    /// The style target is the style image as training gives it, not resized to the photos.
    #[test]
    fn validation_measures_against_the_style_at_its_training_size() {
        tch::manual_seed(3);
        let vgg = || Vgg::random(VggKind::Vgg19, Device::Cpu);
        let photo = Tensor::rand([3, 32, 32], (tch::Kind::Float, Device::Cpu)) * 255.0;
        let style = Tensor::rand([3, 96, 96], (tch::Kind::Float, Device::Cpu)) * 255.0;
        tch::manual_seed(4);
        let validation = Validation::new(
            vec![photo.shallow_clone()],
            vgg(),
            &[style.copy()],
            Device::Cpu,
        )
        .unwrap();
        tch::manual_seed(4);
        let yardstick = Yardstick::new(vgg(), Device::Cpu).unwrap();
        let measure = |target: &StyleTarget| yardstick.measure(&photo, &photo, target).unwrap();
        let as_trained = yardstick.style_target(&style).unwrap();
        let image = models::pixels::tensor_to_image(&style).unwrap();
        let resized = models::eval::style_for(&image::DynamicImage::ImageRgb8(image), 32, 32);
        let resized = yardstick
            .style_target(&models::pixels::image_to_tensor(&resized))
            .unwrap();
        let used = measure(&validation.targets[0]);
        assert_eq!(used, measure(&as_trained));
        assert_ne!(used, measure(&resized));
    }

    #[test]
    fn a_few_photos_are_held_out_of_large_folders_only() {
        assert_eq!(default_holdout(4), 0);
        assert_eq!(default_holdout(9), 0);
        assert_eq!(default_holdout(10), 1);
        assert_eq!(default_holdout(35), 3);
        assert_eq!(default_holdout(82_783), 8);
    }

    #[test]
    fn held_out_photos_are_evenly_spaced_and_leave_the_training_list() {
        let (train, held) = split(files(20), 2);
        assert_eq!(held, [PathBuf::from("005.jpg"), PathBuf::from("015.jpg")]);
        assert_eq!(train.len(), 18);
        assert!(train.iter().all(|f| !held.contains(f)));
        let (train, held) = split(files(10), 1);
        assert_eq!(held, [PathBuf::from("005.jpg")]);
        assert_eq!(train.len(), 9);
        let (train, held) = split(files(3), 0);
        assert_eq!((train.len(), held.len()), (3, 0));
    }
}
