//! The pixel convention, in one place: images become `[3, H, W]` f32 tensors of RGB in
//! [0, 255] (batches `[B, 3, H, W]`), and come back by rounding and clamping. Grayscale and
//! alpha are converted to RGB (alpha dropped), 16-bit keeps its precision, EXIF orientation is
//! applied. Decoding works on bytes: file I/O is the caller's.

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Decodes any supported format from memory and applies its EXIF orientation.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode(e.to_string()))?;
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::Decode(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .map_err(|e| Error::Decode(e.to_string()))?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| Error::Decode(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// `[3, H, W]` f32 RGB in [0, 255].
pub fn image_to_tensor(image: &DynamicImage) -> Tensor {
    let (width, height) = (image.width() as i64, image.height() as i64);
    let hwc = match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => {
            let rgb = image.to_rgb8();
            Tensor::from_slice(rgb.as_raw()).to_kind(Kind::Float)
        }
        // 16-bit and float images: keep their precision on the 0-255 scale.
        _ => {
            let rgb = image.to_rgb32f();
            Tensor::from_slice(rgb.as_raw()) * 255.0
        }
    };
    hwc.view([height, width, 3]).permute([2, 0, 1]).contiguous()
}

/// Rounds and clamps `[3, H, W]` (any device or kind) to an 8-bit RGB image.
pub fn tensor_to_image(tensor: &Tensor) -> Result<RgbImage> {
    let size = tensor.size();
    let (height, width) = match size.as_slice() {
        &[3, h, w] => (h, w),
        other => {
            return Err(Error::Decode(format!(
                "expected a [3, H, W] image tensor, got {other:?}"
            )))
        }
    };
    let hwc = tensor
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .view([-1]);
    let data = Vec::<u8>::try_from(&hwc)?;
    RgbImage::from_raw(width as u32, height as u32, data)
        .ok_or_else(|| Error::Decode("tensor size does not match its data".into()))
}
