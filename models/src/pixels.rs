//! The pixel convention, in one place: images become `[3, H, W]` f32 tensors of RGB in
//! [0, 255] (batches `[B, 3, H, W]`), and come back by rounding and clamping. Grayscale and
//! alpha are converted to RGB (alpha dropped), 16-bit keeps its precision, EXIF orientation is
//! applied. Decoding works on bytes: file I/O is the caller's.

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The most pixels [`decode`] accepts: 400 megapixels, about 6 GB once decoded and converted
/// to f32. Commands that decode user pictures choose their own limit (`--max-pixels`).
pub const DEFAULT_MAX_PIXELS: u64 = 400_000_000;

/// Decodes any supported format from memory and applies its EXIF orientation, refusing an image
/// whose header declares more than [`DEFAULT_MAX_PIXELS`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage> {
    decode_within(bytes, DEFAULT_MAX_PIXELS)
}

/// Like [`decode`], refusing an image whose header declares more than `max_pixels` pixels
/// before anything is decoded: a small file can declare gigapixels, and the image crate
/// allocates the whole picture up front.
pub fn decode_within(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode(e.to_string()))?;
    // The decoders' own buffers (strips, rows, metadata) stay within what the picture may take.
    let mut limits = image::Limits::default();
    limits.max_alloc = limits
        .max_alloc
        .map(|default| default.max(max_pixels.saturating_mul(8)));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::Decode(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Error::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| Error::Decode(e.to_string()))?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| Error::Decode(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// `[3, H, W]` f32 RGB in [0, 255], contiguous.
///
/// The conversion is plain Rust, as is `tensor_to_image`'s for a host tensor: decoding and
/// encoding run on worker threads, and an ATen op there would start an OpenMP team of its own
/// beside the network's, oversubscribing the cores (this halved video throughput on 2 cores).
pub fn image_to_tensor(image: &DynamicImage) -> Tensor {
    let (width, height) = (image.width() as i64, image.height() as i64);
    host_tensor(&rgb_planes(image), &[3, height, width])
}

/// `[N, 3, H, W]` f32 RGB in [0, 255] from images of one size, converted without ATen (as
/// [`image_to_tensor`]): a batch stacked with `Tensor::stack` on a loader thread would start an
/// OpenMP team there beside the network's. `None` for no images or images of different sizes.
pub fn images_to_batch(images: &[DynamicImage]) -> Option<Tensor> {
    let first = images.first()?;
    let (width, height) = (first.width(), first.height());
    if images
        .iter()
        .any(|image| (image.width(), image.height()) != (width, height))
    {
        return None;
    }
    let mut values = Vec::with_capacity(images.len() * 3 * width as usize * height as usize);
    for image in images {
        values.extend(rgb_planes(image));
    }
    Some(host_tensor(
        &values,
        &[images.len() as i64, 3, i64::from(height), i64::from(width)],
    ))
}

/// An image's three f32 planes on the 0-255 scale.
fn rgb_planes(image: &DynamicImage) -> Vec<f32> {
    match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => match image.as_rgb8() {
            Some(rgb) => to_planes(rgb.as_raw(), f32::from),
            None => to_planes(image.to_rgb8().as_raw(), f32::from),
        },
        // 16-bit and float images: keep their precision on the 0-255 scale.
        _ => to_planes(image.to_rgb32f().as_raw(), |v| v * 255.0),
    }
}

/// A contiguous CPU tensor holding `values`. Not `Tensor::from_slice`: it zero-fills first, a
/// parallel ATen op (on a worker thread it starts an OpenMP team of its own) and a wasted pass.
fn host_tensor<T: tch::kind::Element>(values: &[T], shape: &[i64]) -> Tensor {
    let tensor = Tensor::empty(shape, (T::KIND, Device::Cpu));
    assert_eq!(
        tensor.numel(),
        values.len(),
        "shape {shape:?} for {} values",
        values.len()
    );
    // SAFETY: `tensor` is a fresh, contiguous CPU tensor of `T`'s kind with exactly
    // `values.len()` elements, not shared with anything yet.
    unsafe {
        std::ptr::copy_nonoverlapping(values.as_ptr(), tensor.data_ptr() as *mut T, values.len());
    }
    tensor
}

/// Interleaved RGB samples to three f32 planes.
fn to_planes<T: Copy>(interleaved: &[T], value: impl Fn(T) -> f32) -> Vec<f32> {
    let n_pixels = interleaved.len() / 3;
    let mut planes = vec![0f32; 3 * n_pixels];
    let (red, rest) = planes.split_at_mut(n_pixels);
    let (green, blue) = rest.split_at_mut(n_pixels);
    for (i, pixel) in interleaved.chunks_exact(3).enumerate() {
        red[i] = value(pixel[0]);
        green[i] = value(pixel[1]);
        blue[i] = value(pixel[2]);
    }
    planes
}

/// The form `tensor_to_image` converts without ATen: `[3, H, W]` f32, contiguous, on the CPU.
/// Call it on the thread that ran the network before handing images to encoding threads.
pub fn host_image(tensor: &Tensor) -> Tensor {
    tensor
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
}

/// A raw video frame (interleaved RGB bytes, `height` rows of `width` pixels) as `[3, H, W]`
/// f32, channels-last in memory, which is the layout the network runs in on the CPU. ATen work:
/// call it on the network's thread, where it runs in that thread's OpenMP team.
pub fn rgb_frame_to_tensor(bytes: &[u8], width: usize, height: usize) -> Result<Tensor> {
    if bytes.len() != width * height * 3 {
        return Err(Error::Decode(format!(
            "a {width}x{height} RGB frame has {} bytes, not {}",
            width * height * 3,
            bytes.len()
        )));
    }
    let hwc = host_tensor(bytes, &[height as i64, width as i64, 3]);
    Ok(hwc.to_kind(Kind::Float).permute([2, 0, 1]))
}

/// `[3, H, W]` (any layout, device or kind) to a raw frame of interleaved RGB bytes, rounded
/// (half to even) and clamped as `tensor_to_image` does. ATen work, for the network's thread.
pub fn tensor_to_rgb_frame(tensor: &Tensor) -> Result<Vec<u8>> {
    if !matches!(tensor.size().as_slice(), &[3, _, _]) {
        return Err(Error::Decode(format!(
            "expected a [3, H, W] image tensor, got {:?}",
            tensor.size()
        )));
    }
    let hwc = tensor
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .round()
        .clamp_(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous();
    Ok(Vec::<u8>::try_from(&hwc.view([-1]))?)
}

/// Rounds (half to even) and clamps `[3, H, W]` (any device or kind) to an 8-bit RGB image.
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
    let is_host = tensor.device() == Device::Cpu
        && tensor.kind() == Kind::Float
        && tensor.is_contiguous()
        && !tensor.requires_grad();
    let host = if is_host {
        tensor.shallow_clone()
    } else {
        host_image(tensor)
    };
    let planes = Vec::<f32>::try_from(&host.view([-1]))?;
    let n_pixels = (height * width) as usize;
    let (red, rest) = planes.split_at(n_pixels);
    let (green, blue) = rest.split_at(n_pixels);
    // `as u8` saturates (and maps NaN to 0), so clamping is the cast's.
    let byte = |v: f32| v.round_ties_even() as u8;
    let mut data = Vec::with_capacity(3 * n_pixels);
    for ((&r, &g), &b) in red.iter().zip(green).zip(blue) {
        data.extend_from_slice(&[byte(r), byte(g), byte(b)]);
    }
    RgbImage::from_raw(width as u32, height as u32, data)
        .ok_or_else(|| Error::Decode("tensor size does not match its data".into()))
}

/// File extensions taken as images when a folder is searched (training photos, `stylize` and
/// `video` folders), compared case-insensitively: the one list, shared by `datasets` and `infer`.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"];

/// Whether `path` ends in one of [`IMAGE_EXTENSIONS`], in any case.
pub fn has_image_extension(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_declaring_too_many_pixels_are_refused_before_decoding() {
        // 66 bytes declaring 50000x50000 RGB: decoding once allocated its 7.5 GB first
        let bomb = include_bytes!("../../tests/fixtures/fuzz/png_50000x50000.png");
        let error = decode(bomb).unwrap_err();
        assert!(
            matches!(
                error,
                Error::TooManyPixels {
                    width: 50_000,
                    height: 50_000,
                    max_pixels: DEFAULT_MAX_PIXELS
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("(2500.0 megapixels)"), "{error}");
        // found by tests/fuzz.rs (loader bmp, FUZZ_SEED=1, input 11295) before the check: a
        // mutated 40x32 BMP whose header then asked the decoder for 343 GB
        let fuzzed = include_bytes!("../../tests/fixtures/fuzz/bmp_fuzz_seed1_11295.bmp");
        assert!(matches!(
            decode_within(fuzzed, 16_000_000),
            Err(Error::TooManyPixels { .. })
        ));
        // the limit is inclusive
        let mut png = Vec::new();
        RgbImage::new(20, 10)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(decode_within(&png, 200).unwrap().width(), 20);
        assert!(matches!(
            decode_within(&png, 199),
            Err(Error::TooManyPixels { .. })
        ));
    }

    /// The ATen formulation the plain-Rust conversions replace.
    fn aten_image_to_tensor(rgb: &RgbImage) -> Tensor {
        let (width, height) = (rgb.width() as i64, rgb.height() as i64);
        Tensor::from_slice(rgb.as_raw())
            .to_kind(Kind::Float)
            .view([height, width, 3])
            .permute([2, 0, 1])
            .contiguous()
    }

    fn photo() -> DynamicImage {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/photos/chelsea.png");
        decode(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_batch_of_crops_is_the_stack_of_their_tensors() {
        let image = photo();
        let crops: Vec<DynamicImage> = [(0, 0), (120, 40), (300, 100)]
            .iter()
            .map(|&(x, y)| image.crop_imm(x, y, 64, 48))
            .collect();
        let batch = images_to_batch(&crops).unwrap();
        let stacked = Tensor::stack(&crops.iter().map(image_to_tensor).collect::<Vec<_>>(), 0);
        assert_eq!(batch.size(), [3, 3, 48, 64]);
        assert!(batch.equal(&stacked));
        let mixed = [crops[0].clone(), image.crop_imm(0, 0, 48, 64)];
        assert!(images_to_batch(&mixed).is_none());
        assert!(images_to_batch(&[]).is_none());
    }

    #[test]
    fn a_decoded_photo_round_trips_and_matches_aten() {
        let image = photo();
        let tensor = image_to_tensor(&image);
        assert_eq!(
            tensor.size(),
            [3, image.height() as i64, image.width() as i64]
        );
        assert!(tensor.is_contiguous());
        let expected = aten_image_to_tensor(&image.to_rgb8());
        assert!(tensor.equal(&expected));
        assert_eq!(tensor_to_image(&tensor).unwrap(), image.to_rgb8());
        // A channels-last view of the same values converts to the same image.
        let channels_last = crate::precision::to_channels_last(&tensor.unsqueeze(0)).squeeze_dim(0);
        assert!(!channels_last.is_contiguous());
        assert_eq!(tensor_to_image(&channels_last).unwrap(), image.to_rgb8());
    }

    #[test]
    fn raw_frames_convert_like_images() {
        let rgb = photo().to_rgb8();
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        let tensor = rgb_frame_to_tensor(rgb.as_raw(), width, height).unwrap();
        assert!(tensor.equal(&image_to_tensor(&DynamicImage::ImageRgb8(rgb.clone()))));
        assert_eq!(tensor.stride()[0], 1, "channels-last in memory");
        assert_eq!(
            tensor_to_rgb_frame(&tensor).unwrap(),
            rgb.as_raw().as_slice()
        );
        let shifted = &tensor + 0.5;
        assert_eq!(
            tensor_to_rgb_frame(&shifted).unwrap(),
            tensor_to_image(&shifted).unwrap().as_raw().as_slice()
        );
        assert!(rgb_frame_to_tensor(rgb.as_raw(), width + 1, height).is_err());
    }

    #[test]
    fn values_round_half_to_even_and_clamp() {
        let values = [-3.0f32, 0.5, 1.5, 2.49, 254.5, 255.7, 1e9, f32::NAN];
        let tensor = Tensor::from_slice(&values)
            .view([1, 1, 8])
            .repeat([3, 1, 1]);
        let image = tensor_to_image(&tensor).unwrap();
        let reds: Vec<u8> = image.pixels().map(|p| p[0]).collect();
        assert_eq!(reds, [0, 0, 2, 2, 254, 255, 255, 0]);
        // As torch.round and clamp do, NaN aside.
        let aten = tensor
            .narrow(2, 0, 7)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8);
        let aten = Vec::<u8>::try_from(&aten.get(0).view([-1])).unwrap();
        assert_eq!(aten, reds[..7]);
    }
}
