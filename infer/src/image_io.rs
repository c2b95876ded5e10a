//! Reading, resizing and writing images. Pixels go to and from tensors only through
//! `models::pixels`; this module handles files, formats and sizes.

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, RgbImage};

use crate::error::{Error, Result};

/// Formats stylized images are written in, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Jpeg,
    /// Lossless WebP (the image crate encodes only lossless).
    Webp,
    Bmp,
    Tiff,
}

impl OutputFormat {
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            "bmp" => Some(Self::Bmp),
            "tif" | "tiff" => Some(Self::Tiff),
            _ => None,
        }
    }

    /// The format a path's extension names.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_extension(&ext).ok_or(Error::UnsupportedFormat(ext))
    }

    /// The extension written for this format when it is chosen by `--format`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
            Self::Bmp => "bmp",
            Self::Tiff => "tiff",
        }
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_extension(s).ok_or_else(|| Error::UnsupportedFormat(s.to_string()))
    }
}

/// Encodes to `format`; `quality` (1-100) applies to JPEG.
pub fn encode(image: &RgbImage, format: OutputFormat, quality: u8) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let result = match format {
        OutputFormat::Jpeg => {
            JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100)).encode_image(image)
        }
        OutputFormat::Webp => WebPEncoder::new_lossless(&mut bytes).encode(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        ),
        OutputFormat::Png => image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png),
        OutputFormat::Bmp => image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Bmp),
        OutputFormat::Tiff => image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Tiff),
    };
    result.map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// How input images are resized before stylizing: `scale` first, then `max_size` caps the
/// longer side. The aspect ratio is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resize {
    pub scale: Option<f64>,
    pub max_size: Option<u32>,
}

impl Resize {
    /// The size an image of `width`x`height` is resized to.
    pub fn target(&self, width: u32, height: u32) -> (u32, u32) {
        let mut factor = self.scale.unwrap_or(1.0);
        if let Some(max) = self.max_size {
            let longer = (width.max(height) as f64 * factor).round();
            if longer > max as f64 {
                factor *= max as f64 / longer;
            }
        }
        if factor == 1.0 {
            return (width, height);
        }
        let scaled = |side: u32| ((side as f64 * factor).round() as u32).max(1);
        (scaled(width), scaled(height))
    }

    pub fn apply(&self, image: DynamicImage) -> DynamicImage {
        let (width, height) = self.target(image.width(), image.height());
        if (width, height) == (image.width(), image.height()) {
            return image;
        }
        image.resize_exact(width, height, FilterType::CatmullRom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_aspect_and_caps_the_longer_side() {
        let both = Resize {
            scale: Some(0.5),
            max_size: Some(100),
        };
        assert_eq!(both.target(400, 300), (100, 75));
        assert_eq!(both.target(100, 60), (50, 30));
        assert_eq!(Resize::default().target(7, 5), (7, 5));
    }

    #[test]
    fn formats_round_trip_through_their_decoders() {
        let image = RgbImage::from_fn(17, 9, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 128]));
        for format in [
            OutputFormat::Png,
            OutputFormat::Webp,
            OutputFormat::Bmp,
            OutputFormat::Tiff,
        ] {
            let bytes = encode(&image, format, 90).unwrap();
            let back = models::pixels::decode(&bytes).unwrap().to_rgb8();
            assert_eq!(back, image, "{format:?} is lossless");
        }
        let jpeg = encode(&image, OutputFormat::Jpeg, 95).unwrap();
        assert_eq!(models::pixels::decode(&jpeg).unwrap().width(), 17);
    }
}
