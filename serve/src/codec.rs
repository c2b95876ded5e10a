//! Images in and out of requests: the header checked against the pixel limit before anything
//! is decoded, decoding and resizing to a host tensor, encoding the answer. Plain Rust only (no
//! ATen), since it runs on blocking threads beside the network's.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};
use infer::{OutputFormat, Resize};
use tch::Tensor;

use crate::error::{Error, Result};

/// The request's image format from its first bytes, after checking that its declared size is
/// within `max_pixels` (a small file can declare 50000×50000 pixels).
pub fn check_header(bytes: &[u8], max_pixels: u64) -> Result<ImageFormat> {
    if bytes.is_empty() {
        return Err(Error::BadRequest(
            "the request has no image: send it as the body or as the multipart part `image`".into(),
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::BadRequest(format!("cannot read the image: {e}")))?;
    // Only the header is read here, and the decoder's own allocation limit would refuse a
    // pixel bomb with a less helpful message than the check below.
    reader.no_limits();
    let Some(format) = reader.format() else {
        return Err(Error::UnsupportedMedia(
            "the file is not an image in a format this server reads (png, jpeg, webp, bmp, tiff)"
                .into(),
        ));
    };
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Error::BadRequest(format!("cannot read the image's header: {e}")))?;
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(Error::TooLarge(format!(
            "the image declares {width}x{height} pixels, more than the {} megapixels this server \
             decodes",
            max_pixels as f64 / 1e6
        )));
    }
    if pixels == 0 {
        return Err(Error::BadRequest(format!(
            "the image declares {width}x{height} pixels"
        )));
    }
    Ok(format)
}

/// Decodes (EXIF orientation applied).
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage> {
    models::pixels::decode(bytes)
        .map_err(|e| Error::BadRequest(format!("cannot decode the image: {e}")))
}

/// Decodes and caps the longer side at `max_size`.
pub fn decode_fitted(bytes: &[u8], max_size: u32) -> Result<DynamicImage> {
    let resize = Resize {
        scale: None,
        max_size: Some(max_size),
    };
    Ok(resize.apply(decode_image(bytes)?))
}

/// Decodes, caps the longer side at `max_size` and converts to a `[3, H, W]` host tensor in
/// the pixel convention.
pub fn decode(bytes: &[u8], max_size: u32) -> Result<Tensor> {
    Ok(models::pixels::image_to_tensor(&decode_fitted(
        bytes, max_size,
    )?))
}

/// Encodes a `[3, H, W]` host tensor.
pub fn encode(image: &Tensor, format: OutputFormat, quality: u8) -> Result<Vec<u8>> {
    let rgb = models::pixels::tensor_to_image(image)?;
    infer::image_io::encode(&rgb, format, quality)
        .map_err(|reason| Error::Internal(format!("cannot encode the image: {reason}")))
}

pub fn content_type(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Png => "image/png",
        OutputFormat::Jpeg => "image/jpeg",
        OutputFormat::Webp => "image/webp",
        OutputFormat::Bmp => "image/bmp",
        OutputFormat::Tiff => "image/tiff",
    }
}

/// The output format that matches an input format, where the server can write it.
pub fn output_format_of(input: ImageFormat) -> OutputFormat {
    match input {
        ImageFormat::Jpeg => OutputFormat::Jpeg,
        ImageFormat::WebP => OutputFormat::Webp,
        _ => OutputFormat::Png,
    }
}

/// What a stylize request asks for, from its query string and multipart fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StylizeParams {
    pub style: Option<String>,
    pub strength: f64,
    pub preserve_color: bool,
    /// The longer side of the result; the input is scaled down to it, never up.
    pub max_size: Option<u32>,
    pub format: Option<OutputFormat>,
    pub quality: u8,
}

impl Default for StylizeParams {
    fn default() -> Self {
        Self {
            style: None,
            strength: 1.0,
            preserve_color: false,
            max_size: None,
            format: None,
            quality: 90,
        }
    }
}

/// The names `StylizeParams::set` takes, for error messages.
pub const PARAM_NAMES: &str = "style, strength, preserve_color, max_size, format, quality";

impl StylizeParams {
    /// Sets one parameter, checking its range; `max_side` is the server's largest `max_size`.
    pub fn set(&mut self, name: &str, value: &str, max_side: u32) -> Result<()> {
        let value = value.trim();
        let bad = |what: &str| Error::BadRequest(format!("`{name}={value}`: {what}"));
        match name {
            "style" => self.style = Some(value.to_string()),
            "strength" => {
                let strength: f64 = value.parse().map_err(|_| bad("not a number"))?;
                if !(0.0..=1.0).contains(&strength) {
                    return Err(bad("strength must be between 0 and 1"));
                }
                self.strength = strength;
            }
            "preserve_color" => {
                self.preserve_color = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    _ => return Err(bad("use true or false")),
                }
            }
            "max_size" => {
                let size: u32 = value.parse().map_err(|_| bad("not a whole number"))?;
                if !(16..=max_side).contains(&size) {
                    return Err(bad(&format!("max_size must be between 16 and {max_side}")));
                }
                self.max_size = Some(size);
            }
            "format" => {
                self.format = Some(
                    value
                        .parse()
                        .map_err(|_| bad("use png, jpeg, webp, bmp or tiff"))?,
                )
            }
            "quality" => {
                let quality: u8 = value.parse().map_err(|_| bad("not a whole number"))?;
                if !(1..=100).contains(&quality) {
                    return Err(bad("quality must be between 1 and 100"));
                }
                self.quality = quality;
            }
            _ => {
                return Err(Error::BadRequest(format!(
                    "unknown parameter `{name}` (the parameters: {PARAM_NAMES})"
                )))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, 90])
        });
        infer::image_io::encode(&image, OutputFormat::Png, 90).unwrap()
    }

    /// A small valid PNG file (8x8 pixels of data) whose header declares `width`x`height`.
    fn png_declaring(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = png(8, 8);
        bytes[16..20].copy_from_slice(&width.to_be_bytes());
        bytes[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn headers_are_checked_before_decoding() {
        assert_eq!(check_header(&png(20, 10), 1000).unwrap(), ImageFormat::Png);
        let bomb = png_declaring(50_000, 50_000);
        assert!(matches!(
            check_header(&bomb, 40_000_000),
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            check_header(b"not an image at all", 1000),
            Err(Error::UnsupportedMedia(_))
        ));
        assert!(matches!(check_header(&[], 1000), Err(Error::BadRequest(_))));
        let truncated = &png(64, 64)[..60];
        assert!(check_header(truncated, 1_000_000).is_ok());
        assert!(matches!(decode(truncated, 64), Err(Error::BadRequest(_))));
    }

    #[test]
    fn decoding_caps_the_longer_side() {
        let tensor = decode(&png(40, 20), 16).unwrap();
        assert_eq!(tensor.size(), [3, 8, 16]);
        let back = encode(&tensor, OutputFormat::Png, 90).unwrap();
        let image = models::pixels::decode(&back).unwrap();
        assert_eq!((image.width(), image.height()), (16, 8));
    }

    #[test]
    fn parameters_are_range_checked() {
        let mut params = StylizeParams::default();
        params.set("strength", "0.25", 2048).unwrap();
        params.set("preserve_color", "on", 2048).unwrap();
        params.set("max_size", "512", 2048).unwrap();
        params.set("format", "jpg", 2048).unwrap();
        assert_eq!(params.strength, 0.25);
        assert!(params.preserve_color);
        assert_eq!(params.format, Some(OutputFormat::Jpeg));
        for (name, value) in [
            ("strength", "1.5"),
            ("strength", "NaN"),
            ("max_size", "4096"),
            ("max_size", "8"),
            ("format", "gif"),
            ("quality", "0"),
            ("preserve_color", "maybe"),
            ("path", "/etc/passwd"),
        ] {
            assert!(params.set(name, value, 2048).is_err(), "{name}={value}");
        }
    }
}
