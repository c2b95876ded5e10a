//! What the commands share: the typed device argument, the options of every command that runs
//! a network (`RunArgs`), the precision check, and progress bars.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use anyhow::Context;

use indicatif::{ProgressBar, ProgressStyle};
use models::Precision;
use tch::Device;
use trainer::optimize::DynamicImage;

/// `--device`: `auto` (CUDA if present), `cpu`, `cuda` or `cuda:N`, checked against the devices
/// present when the arguments are parsed; for the commands that run workers over a queue
/// (`stylize`, `video`) also `cpu:N` (N CPU workers) and `cuda:all` (one per GPU). Keeps the
/// spelling given, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceArg {
    workers: Vec<Device>,
    given: String,
}

impl FromStr for DeviceArg {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let workers = match text {
            "cuda:all" => {
                let count = if tch::Cuda::is_available() {
                    tch::Cuda::device_count() as usize
                } else {
                    0
                };
                anyhow::ensure!(count > 0, "cuda:all found no CUDA device");
                (0..count).map(Device::Cuda).collect()
            }
            _ => match text.strip_prefix("cpu:").map(str::parse::<usize>) {
                Some(Ok(count)) if count >= 1 => vec![Device::Cpu; count],
                Some(_) => anyhow::bail!("`{text}`: cpu:N needs a worker count of at least 1"),
                None => vec![models::precision::parse_device(text)?],
            },
        };
        Ok(DeviceArg {
            workers,
            given: text.to_string(),
        })
    }
}

impl DeviceArg {
    /// The device of a command that runs one network; several (`cpu:2`, `cuda:all`) are
    /// refused.
    pub fn single(&self) -> anyhow::Result<Device> {
        anyhow::ensure!(
            self.workers.len() == 1,
            "--device {} runs several workers, which only stylize and video do; give one device",
            self.given
        );
        Ok(self.workers[0])
    }

    /// One device per worker (several for `cpu:N` and `cuda:all`).
    pub fn workers(&self) -> &[Device] {
        &self.workers
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

/// Where and how a network runs: the options of every command that runs one (`stylize`,
/// `video`, `sheet`, `train`; `bench` has its own defaults, see `bench::BenchRunArgs`).
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Where the network runs: auto (CUDA if present), cpu, cuda or cuda:N. stylize and video
    /// also take several workers over one queue: cuda:all (one per GPU) or cpu:N
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceArg,
    /// Arithmetic of the network: f32, bf16 (CPU or CUDA) or f16 (CUDA; training scales the
    /// loss dynamically)
    #[arg(long, value_name = "PRECISION", default_value_t = Precision::F32)]
    pub precision: Precision,
    /// CPU threads for the network, and for decoding and encoding images (default: all cores)
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
}

impl RunArgs {
    /// The one device of a command that runs one network.
    pub fn device(&self) -> anyhow::Result<Device> {
        self.device.single()
    }

    /// `--threads`, or every core.
    pub fn threads_or_all_cores(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }
}

/// A count flag that must be at least 1 (`--threads`).
/// From the call on, SIGINT and SIGTERM ask the command to stop cleanly: the returned number
/// becomes the signal's, for the command to finish what is in flight and exit 128 + it; a
/// second signal exits at once.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicUsize>> {
    let signal = Arc::new(AtomicUsize::new(0));
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&signalled))?;
        signal_hook::flag::register(sig, Arc::clone(&signalled))?;
        signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
    }
    Ok(signal)
}

/// `--max-pixels`: pictures whose header declares more pixels are refused before decoding.
#[derive(clap::Args, Debug, Clone)]
pub struct MaxPixelsArg {
    /// Refuse a picture whose header declares more pixels than this, before decoding it (a
    /// small file can declare gigapixels): a count, or megapixels as `400M`. Default: one pixel
    /// per 40 bytes of memory (what a picture costs through the pipeline), at most 400M
    #[arg(long, value_name = "N", value_parser = pixel_count)]
    pub max_pixels: Option<u64>,
}

impl MaxPixelsArg {
    /// The limit given, or the one this machine's memory allows.
    pub fn get(&self) -> u64 {
        self.max_pixels
            .unwrap_or_else(infer::tiling::default_max_pixels)
    }
}

/// A pixel count: `N`, or `N` megapixels as `NM` (`400M`, `2.5M`).
fn pixel_count(text: &str) -> anyhow::Result<u64> {
    let pixels = match text.strip_suffix(['M', 'm']) {
        Some(mega) => {
            let mega: f64 = mega.parse()?;
            anyhow::ensure!(mega.is_finite() && mega >= 0.0, "not a pixel count");
            (mega * 1e6).round() as u64
        }
        None => text.parse()?,
    };
    anyhow::ensure!(pixels >= 1, "must be at least 1");
    Ok(pixels)
}

/// Reads and decodes a picture (EXIF orientation applied), refusing one whose header declares
/// more than `max_pixels` before decoding it.
pub fn read_picture(path: &Path, max_pixels: u64) -> anyhow::Result<DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    models::pixels::decode_within(&bytes, max_pixels)
        .with_context(|| format!("cannot decode {}", path.display()))
}

pub fn at_least_one(text: &str) -> anyhow::Result<usize> {
    let n: usize = text.parse()?;
    anyhow::ensure!(n >= 1, "must be at least 1");
    Ok(n)
}

/// Refuses a precision the device cannot run and warns where the CPU would emulate bf16.
pub fn check_precision(precision: Precision, device: Device) -> anyhow::Result<()> {
    precision.check_device(device)?;
    if let Some(warning) = models::precision::bf16_speed_warning(precision, device) {
        eprintln!("atelier: warning: {warning}");
    }
    Ok(())
}

/// Progress of many images: count, rate and time left.
pub const IMAGES: &str = "{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}";
/// Progress of a video's frames.
pub const FRAMES: &str = "{bar:40} {pos}/{len} frames  {per_sec}  ETA {eta}";
/// Progress of training, with the latest losses as the message.
/// Iterations of one scale of `optimize`, the scale's size as the prefix.
pub const OPTIMIZE: &str = "{prefix} {bar:30} {pos}/{len}  {per_sec}  ETA {eta}  {msg}";
pub const STEPS: &str = "{bar:30} {pos}/{len} steps  {elapsed_precise} ETA {eta_precise}  {msg}";

/// A progress bar on stderr in `template`, of `len` steps (`None`: unknown), or a hidden one
/// when `show` is false.
pub fn progress_bar(show: bool, len: Option<u64>, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
