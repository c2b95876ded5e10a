//! What a training run is given: its style images and its loss network. The trainer and its
//! loop, once here, are `crate::state`'s and `crate::run`'s; they stay reachable under this
//! module too.

use std::path::Path;

use models::vgg::{Vgg, VggKind};
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

pub use crate::run::{run, Event, Outcome, StepReport};
pub use crate::state::{LossValues, StepLosses, Trainer};

/// Loads a style image and resizes it so its shorter side is `style_size` (aspect kept).
pub fn load_style_image(path: &Path, style_size: Option<i64>) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let image = models::pixels::decode(&bytes).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let image = match style_size {
        Some(side) => {
            let (w, h) = (image.width() as f64, image.height() as f64);
            let scale = side as f64 / w.min(h);
            let (new_w, new_h) = ((w * scale).round().max(1.0), (h * scale).round().max(1.0));
            image.resize_exact(
                new_w as u32,
                new_h as u32,
                image::imageops::FilterType::Lanczos3,
            )
        }
        None => image,
    };
    if image.width() < 16 || image.height() < 16 {
        return Err(Error::Image {
            path: path.to_path_buf(),
            reason: "the style image is smaller than 16x16".into(),
        });
    }
    Ok(models::pixels::image_to_tensor(&image))
}

/// The loss network a config names, loaded from its weights file.
pub fn load_loss_net(config: &TrainConfig, device: Device) -> Result<Vgg> {
    let kind: VggKind = config.loss_net.parse()?;
    Ok(Vgg::load(&config.loss_weights, kind, device)?)
}
