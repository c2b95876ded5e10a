//! Shared helpers for the datasets tests: real images written by the image crate, copies of
//! the bundled sample photos, and hand-made JPEG variants.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use datasets::{Batch, PhotoStream, StreamConfig};
use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba};

pub fn assets_photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/photos")
        .join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn copy_asset(name: &str, to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(assets_photo(name), to).unwrap();
}

/// A smooth two-direction gradient: every crop position looks different.
pub fn gradient(width: u32, height: u32, tint: u8) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width.max(2)) as u8,
            (y * 255 / height.max(2)) as u8,
            tint,
        ])
    })
}

pub fn save_rgb(image: &RgbImage, path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save(path).unwrap();
}

pub fn save_gray(width: u32, height: u32, path: &Path) {
    let image =
        ImageBuffer::<Luma<u8>, _>::from_fn(width, height, |x, y| Luma([((x + y) % 256) as u8]));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save(path).unwrap();
}

pub fn save_rgba(width: u32, height: u32, path: &Path) {
    let image = ImageBuffer::<Rgba<u8>, _>::from_fn(width, height, |x, y| {
        Rgba([x as u8, y as u8, 90, (x % 256) as u8])
    });
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save(path).unwrap();
}

pub fn save_rgb16(width: u32, height: u32, path: &Path) {
    let image = ImageBuffer::<Rgb<u16>, _>::from_fn(width, height, |x, y| {
        Rgb([(x * 1000) as u16, (y * 1000) as u16, 40000])
    });
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save(path).unwrap();
}

pub fn jpeg_bytes(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
        .encode_image(image)
        .unwrap();
    bytes
}

/// Inserts an EXIF APP1 segment holding only an orientation tag right after the SOI marker.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big-endian TIFF header, IFD at offset 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A file per distinct solid colour, so a batch element tells which file it came from.
pub const SOLID_COLORS: [[u8; 3]; 8] = [
    [250, 10, 10],
    [10, 250, 10],
    [10, 10, 250],
    [250, 250, 10],
    [10, 250, 250],
    [250, 10, 250],
    [128, 128, 128],
    [20, 20, 20],
];

pub fn save_solid(color: [u8; 3], width: u32, height: u32, path: &Path) {
    save_rgb(&RgbImage::from_pixel(width, height, Rgb(color)), path);
}

/// Which of `SOLID_COLORS` each image of the batch is (from its mean colour).
pub fn solid_indices(batch: &Batch) -> Vec<usize> {
    let means = batch
        .images
        .mean_dim([2i64, 3].as_slice(), false, tch::Kind::Float);
    let means = Vec::<f32>::try_from(means.reshape([-1])).unwrap();
    means
        .chunks(3)
        .map(|mean| {
            let distance = |color: &[u8; 3]| -> f32 {
                color
                    .iter()
                    .zip(mean)
                    .map(|(&c, &m)| (c as f32 - m).abs())
                    .sum()
            };
            let (index, color) = SOLID_COLORS
                .iter()
                .enumerate()
                .min_by(|a, b| distance(a.1).partial_cmp(&distance(b.1)).unwrap())
                .unwrap();
            assert!(
                distance(color) < 6.0,
                "mean {mean:?} is none of the solid colours"
            );
            index
        })
        .collect()
}

pub fn config(image_size: i64, batch_size: usize, seed: u64) -> StreamConfig {
    StreamConfig {
        image_size,
        batch_size,
        seed,
        prefetch: 2,
        n_threads: 2,
        cache_bytes: datasets::stream::DEFAULT_CACHE_BYTES,
    }
}

pub fn take_batches(stream: &mut PhotoStream, n: usize) -> Vec<Batch> {
    (0..n).map(|_| stream.next_batch().unwrap()).collect()
}

pub fn assert_same_batches(a: &[Batch], b: &[Batch]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.epoch, y.epoch, "batch {i}: epoch");
        assert!(x.images.equal(&y.images), "batch {i}: images differ");
    }
}
