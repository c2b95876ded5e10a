//! Huge images in overlapping tiles, without seams.
//!
//! Instance norm makes every pixel depend on whole-image statistics, so tiles stylized on
//! their own would each get their own colours. Instead one pass over a (downscaled, if needed)
//! copy of the whole image records each norm layer's mean and variance, and every tile replays
//! them. Tiles overlap by more than the network's receptive field reaches into a tile, and are
//! blended with a linear ramp, so the reflection padding at tile edges never shows.
//!
//! The statistics pass runs at full size when it fits the memory budget, and then tiles match
//! the untiled output (mean abs difference about 0.01 on [0, 255]). Past that it runs on an
//! area-downscaled copy: still no seams and no tile-to-tile colour shifts, but the texture
//! statistics of a smaller image differ, so the result drifts from what an untiled run would
//! give (measured on a 2048² photo with the built-in network: mean abs difference 10 with the
//! statistics at 0.7× and 18 at 0.5× linear scale).

use models::{NetSpec, NormStats, Precision};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::stylizer::Stylizer;

/// Overlap between neighbouring tiles, in pixels: the networks' receptive fields reach about
/// 70 px, and the blend ramp spans the middle half of the overlap.
pub const OVERLAP: i64 = 128;

/// `--tile`: when and how big to tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TileMode {
    /// Tile only images that would exceed the memory budget.
    #[default]
    Auto,
    /// Never tile.
    Off,
    /// Tile every image whose longer side exceeds N, in tiles of at most N×N.
    Size(i64),
}

impl std::str::FromStr for TileMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            _ => match s.parse::<i64>() {
                Ok(n) if n >= 2 * OVERLAP => Ok(Self::Size(n)),
                _ => Err(Error::Invalid(format!(
                    "invalid --tile `{s}` (use auto, off or a tile side of at least {})",
                    2 * OVERLAP
                ))),
            },
        }
    }
}

/// Peak activation memory of one forward pass, per input pixel, in bytes, with a 25% margin.
/// The widest full-resolution moments are deconv2 (its upsampled input, the padded copy, and
/// the conv output and its norm) and conv1 (output, norm, activation). Measured on the CPU in
/// f32: johnson about 870 B/px (estimate 1360), multistyle26 about 300 B/px (estimate 560).
pub fn activation_bytes_per_pixel(spec: &NetSpec, precision: Precision) -> u64 {
    let element: i64 = match precision {
        Precision::F32 => 4,
        Precision::Bf16 | Precision::F16 => 2,
    };
    let [d1, _, _] = spec.down_channels;
    let [u1, u2] = spec.up_channels;
    let floats = (3 * u1 + 2 * u2).max(3 * d1) + 16;
    (floats * element * 5 / 4) as u64
}

/// How much memory a forward pass may use on `device`: on the CPU half of what the system has
/// available (at most 4 GiB: bigger tiles are no faster there), on CUDA 70% of the free memory
/// `nvidia-smi` reports (4 GiB when it cannot be asked).
pub fn memory_budget(device: Device) -> u64 {
    const GIB: u64 = 1 << 30;
    match device {
        Device::Cuda(index) => cuda_free_bytes(index)
            .map(|free| free / 10 * 7)
            .unwrap_or(4 * GIB),
        _ => available_memory()
            .map(|m| (m / 2).min(4 * GIB))
            .unwrap_or(2 * GIB),
    }
}

/// What one decoded picture costs on its way through the pipeline, per pixel: up to 6 bytes
/// decoded (16-bit RGB), 12 as the f32 input tensor, 12 as the f32 output, 3 as the encoded
/// image's RGB, and room for the encoder's buffers.
const PICTURE_BYTES_PER_PIXEL: u64 = 40;

/// The default of `--max-pixels`: one pixel per 40 bytes of the machine's memory (what a
/// picture costs through the pipeline), capped at `models::pixels::DEFAULT_MAX_PIXELS`
/// (400 megapixels, reached at 16 GB), and never under 16 megapixels.
pub fn default_max_pixels() -> u64 {
    const FLOOR: u64 = 16_000_000;
    meminfo("MemTotal:")
        .map(|total| total / PICTURE_BYTES_PER_PIXEL)
        .unwrap_or(models::pixels::DEFAULT_MAX_PIXELS)
        .clamp(FLOOR, models::pixels::DEFAULT_MAX_PIXELS)
}

/// `MemAvailable` from /proc/meminfo.
fn available_memory() -> Option<u64> {
    meminfo("MemAvailable:")
}

/// A /proc/meminfo line's value, in bytes.
fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cuda_free_bytes(index: usize) -> Option<u64> {
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.free",
            "--format=csv,noheader,nounits",
            "-i",
            &index.to_string(),
        ])
        .output()
        .ok()?;
    let mib: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    Some(mib << 20)
}

/// The tile side for an image, or `None` to run it whole.
pub fn tile_side(
    mode: TileMode,
    height: i64,
    width: i64,
    bytes_per_pixel: u64,
    budget: u64,
) -> Option<i64> {
    match mode {
        TileMode::Off => None,
        TileMode::Size(side) => (height.max(width) > side).then_some(side),
        TileMode::Auto => {
            if (height * width) as u64 * bytes_per_pixel <= budget {
                return None;
            }
            let side = ((budget / bytes_per_pixel) as f64).sqrt() as i64 / 4 * 4;
            Some(side.max(2 * OVERLAP + 64))
        }
    }
}

/// Start offsets of tiles of `tile` along an axis of `length`, multiples of 4 (the network's
/// downsampling factor, so every tile sees the same sampling grid as the whole image). Each
/// tile spans `[start, next_start + overlap)`, the last one runs to the end.
fn tile_starts(length: i64, tile: i64, overlap: i64) -> Vec<(i64, i64)> {
    if length <= tile {
        return vec![(0, length)];
    }
    let step = ((tile - overlap) / 4 * 4).max(4);
    let mut spans = Vec::new();
    let mut start = 0;
    loop {
        if start + tile >= length {
            spans.push((start, length - start));
            return spans;
        }
        spans.push((start, tile));
        let next = start + step;
        // No sliver at the end: the last tile starts as late as it can while still reaching the
        // end (which only makes its overlap larger).
        start = if next + tile > length {
            (length - tile + 3) / 4 * 4
        } else {
            next
        };
    }
}

/// Blend weights along one axis of a tile. Towards a tile edge inside the image the network
/// sees reflection padding instead of the true neighbourhood, so the outer quarter of the
/// overlap gets (almost) no weight and the middle half ramps linearly; the neighbour's ramp
/// mirrors it, so the weights of the two sum to 1. At the image's own borders: full weight.
fn ramp(start: i64, len: i64, total: i64, overlap: i64) -> Vec<f32> {
    let margin = overlap / 4;
    let rise = |distance: i64| {
        ((distance - margin + 1) as f32 / (overlap - 2 * margin + 1) as f32).clamp(1e-4, 1.0)
    };
    (0..len)
        .map(|i| {
            let mut w = 1.0f32;
            if start > 0 {
                w = w.min(rise(i));
            }
            if start + len < total {
                w = w.min(rise(len - 1 - i));
            }
            w
        })
        .collect()
}

/// Stylizes `[3, H, W]` (CPU, [0, 255]) in tiles of at most `tile`×`tile`; the result is
/// `[3, H, W]` f32 on the CPU. `stats_pixels` caps the size of the statistics pass.
pub fn stylize_tiled(
    stylizer: &Stylizer,
    image: &Tensor,
    tile: i64,
    stats_pixels: u64,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let (height, width) = match image.size().as_slice() {
        &[3, h, w] => (h, w),
        other => {
            return Err(Error::Invalid(format!(
                "expected a [3, H, W] image, got {other:?}"
            )))
        }
    };
    let image = image.to_kind(Kind::Float).unsqueeze(0);

    // Statistics of the whole image, from a copy small enough to run at once. Area averaging
    // keeps the colour statistics the full image has.
    let shrink = ((stats_pixels as f64) / (height * width) as f64)
        .sqrt()
        .min(1.0);
    let stats_input = if shrink < 1.0 {
        let side = |s: i64| ((s as f64 * shrink) as i64).max(models::transformer::MIN_INPUT_SIDE);
        image.adaptive_avg_pool2d([side(height), side(width)])
    } else {
        image.shallow_clone()
    };
    // The style is the whole photo's (a style vector below strength 1 mixes in the photo's own
    // vector), so every tile gets the same γ/β.
    let style = stylizer.photo_style(&image)?;
    let mut stats = Vec::new();
    // Only the statistics matter; the small stylized copy is dropped.
    let _ = stylizer.stylize_photo(&stats_input, &style, NormStats::Record(&mut stats))?;
    drop(stats_input);

    let overlap = OVERLAP.min(tile / 2);
    let mut output = Tensor::zeros([1, 3, height, width], (Kind::Float, Device::Cpu));
    let weights = Tensor::zeros([1, 1, height, width], (Kind::Float, Device::Cpu));
    for (y0, th) in tile_starts(height, tile, overlap) {
        let wy = Tensor::from_slice(&ramp(y0, th, height, overlap)).view([1, 1, th, 1]);
        for (x0, tw) in tile_starts(width, tile, overlap) {
            let wx = Tensor::from_slice(&ramp(x0, tw, width, overlap)).view([1, 1, 1, tw]);
            let mask = &wy * &wx;
            let crop = image.narrow(2, y0, th).narrow(3, x0, tw);
            let styled = stylizer
                .stylize_photo(&crop, &style, NormStats::Replay(&stats))?
                .to_device(Device::Cpu);
            let _ = output
                .narrow(2, y0, th)
                .narrow(3, x0, tw)
                .g_add_(&(styled * &mask));
            let _ = weights.narrow(2, y0, th).narrow(3, x0, tw).g_add_(&mask);
        }
    }
    output /= weights;
    Ok(output.squeeze_dim(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stylizer::{Finish, StyleMix};
    use models::{Model, ModelMeta, NetSpec};

    #[test]
    fn tiles_cover_the_axis_on_the_downsampling_grid() {
        for (length, tile) in [
            (1000, 300),
            (301, 300),
            (300, 300),
            (777, 200),
            (4001, 1024),
        ] {
            let spans = tile_starts(length, tile, OVERLAP.min(tile / 2));
            assert_eq!(spans[0].0, 0);
            let (last_start, last_len) = *spans.last().unwrap();
            assert_eq!(last_start + last_len, length, "{length} {tile}: {spans:?}");
            for pair in spans.windows(2) {
                let ((a, la), (b, _)) = (pair[0], pair[1]);
                assert_eq!(b % 4, 0);
                assert!(b > a && a + la - b >= OVERLAP.min(tile / 2), "{spans:?}");
            }
            assert!(spans.iter().all(|&(_, l)| l <= tile));
        }
    }

    #[test]
    fn ramps_are_positive_and_flat_at_image_borders() {
        let w = ramp(0, 10, 10, 4);
        assert!(w.iter().all(|&v| v == 1.0));
        let w = ramp(8, 40, 100, 16);
        assert!(w.iter().all(|&v| v > 0.0 && v <= 1.0));
        assert!(w[0] < 0.01 && w[8] > 0.5 && w[20] == 1.0);
        // A neighbour starting `overlap` later mirrors the ramp: together they weigh 1.
        let next = ramp(8 + 40 - 16, 40, 100, 16);
        for k in 0..16 {
            let sum = w[40 - 16 + k] + next[k];
            assert!((sum - 1.0).abs() < 1e-3, "{k}: {sum}");
        }
    }

    #[test]
    fn tile_mode_parses() {
        assert_eq!("auto".parse::<TileMode>().unwrap(), TileMode::Auto);
        assert_eq!("off".parse::<TileMode>().unwrap(), TileMode::Off);
        assert_eq!("512".parse::<TileMode>().unwrap(), TileMode::Size(512));
        assert!("10".parse::<TileMode>().is_err());
    }

    fn photo() -> Tensor {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/photos/astronaut.png");
        let image = models::pixels::decode(&std::fs::read(path).unwrap()).unwrap();
        models::pixels::image_to_tensor(&image)
    }

    fn stylizer(model: Model) -> Stylizer {
        let mix = StyleMix::parse(None, &model.meta.styles, 0).unwrap();
        Stylizer::new(model, Device::Cpu, Precision::F32, mix, Finish::default()).unwrap()
    }

    fn mean_abs(a: &Tensor, b: &Tensor) -> f64 {
        let round = |t: &Tensor| t.round().clamp(0.0, 255.0);
        f64::try_from((round(a) - round(b)).abs().mean(Kind::Float)).unwrap()
    }

    #[test]
    fn tiles_with_whole_image_statistics_match_the_untiled_output() {
        let meta = ModelMeta {
            spec: NetSpec::multistyle26().with_styles(1),
            styles: vec!["random".into()],
            training: None,
        };
        let stylizer = stylizer(Model::new(meta, Device::Cpu).unwrap());
        let image = photo();
        let whole = stylizer
            .stylize(&image.unsqueeze(0))
            .unwrap()
            .squeeze_dim(0);
        // Statistics from the whole image at full size: tiles reproduce it almost exactly.
        let tiled = stylize_tiled(&stylizer, &image, 288, 512 * 512).unwrap();
        let difference = mean_abs(&whole, &tiled);
        assert!(difference < 0.5, "mean abs difference {difference}");
    }
}
