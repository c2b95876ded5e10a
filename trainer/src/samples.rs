//! Sample images during training: the sample photo stylized with each style, encoded to PNG
//! once, written to a file and, when logging, to TensorBoard.

use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::error::{Error, Result};
use crate::events::EventWriter;
use crate::state::Trainer;

/// `<sample dir>/<model stem>.sample-<step>[.<style>].png`, beside the TensorBoard logs if
/// any, else beside the checkpoint; each PNG also goes to `events` as `sample/<style>`.
pub(crate) fn write_samples(
    trainer: &Trainer,
    image: &Tensor,
    step: u64,
    mut events: Option<&mut EventWriter>,
) -> Result<Vec<PathBuf>> {
    let config = &trainer.config;
    let dir = config
        .log_dir
        .clone()
        .or_else(|| config.checkpoint_path.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let stem = config
        .output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let outputs = trainer.stylize(image)?;
    let multi = outputs.len() > 1;
    let mut paths = Vec::new();
    for (output, style) in outputs.iter().zip(&config.style_names) {
        let name = if multi {
            format!("{stem}.sample-{step:07}.{style}.png")
        } else {
            format!("{stem}.sample-{step:07}.png")
        };
        let path = dir.join(name);
        let rgb = models::pixels::tensor_to_image(output)?;
        let png = encode_png(&rgb).map_err(|reason| Error::Image {
            path: path.clone(),
            reason,
        })?;
        models::file::write_atomically(&path, &png)?;
        if let Some(writer) = events.as_deref_mut() {
            let size = (rgb.width(), rgb.height());
            writer.png_image(step, &format!("sample/{style}"), size, &png)?;
        }
        paths.push(path);
    }
    Ok(paths)
}

pub(crate) fn encode_png(rgb: &image::RgbImage) -> std::result::Result<Vec<u8>, String> {
    let mut png = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_encode_to_png_that_decodes_to_the_same_pixels() {
        let rgb =
            image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 80, 7]));
        let png = encode_png(&rgb).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(decoded, rgb);
    }
}
