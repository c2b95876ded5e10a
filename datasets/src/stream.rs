//! [`PhotoStream`]: an endless, reproducible and resumable stream of batches of square photo
//! crops, decoded in parallel ahead of the consumer.
//!
//! Each epoch visits every file once, in an order shuffled from (seed, epoch). Each photo is
//! decoded (`models::pixels::decode`: EXIF orientation applied, any colour type to RGB),
//! resized so that its shorter side is `image_size` and cropped to `image_size` squared at a
//! position drawn from (seed, epoch, file). Files that cannot be used are skipped: the batch
//! takes the next photos instead, and the skip is reported once, with the batch being filled.
//! The last incomplete batch of an epoch is dropped.
//!
//! The stream shares the cores with training, so it stays out of the way: resized photos are
//! kept in memory up to [`StreamConfig::cache_bytes`] (a folder that fits is decoded once, not
//! every epoch; a small folder of large photos otherwise costs a decode per photo per step), its
//! threads run at the lowest CPU priority on Linux (a decoder that preempts one thread of
//! ATen's OpenMP team stalls the whole team at its next barrier), and batches are assembled
//! without ATen ops (one there would start an OpenMP team of its own on the stream's thread).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result};
use crate::rng::SplitMix64;

// Domains keep the shuffle and crop random streams unrelated for equal keys.
const ORDER_DOMAIN: u64 = 0x006f_7264_6572; // "order"
const CROP_DOMAIN: u64 = 0x6372_6f70; // "crop"

/// 1 GiB: about 4,000 photos at the 256-pixel default, or every photo of a small folder.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// How a [`PhotoStream`] makes batches. Only `image_size`, `batch_size` and `seed` change the
/// batches; `prefetch`, `n_threads` and `cache_bytes` only change speed and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// Side of the square crops, in pixels.
    pub image_size: i64,
    /// Photos per batch.
    pub batch_size: usize,
    /// Seed of the epoch orders and the crop positions.
    pub seed: u64,
    /// Batches decoded ahead of the consumer (the bound of the queue).
    pub prefetch: usize,
    /// Decoding threads.
    pub n_threads: usize,
    /// Resized photos (before cropping) kept in memory, in bytes of decoded pixels: photos
    /// that fit are decoded only in the first epoch.
    pub cache_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        let n_threads = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .min(8);
        Self {
            image_size: 256,
            batch_size: 4,
            seed: 0,
            prefetch: 8,
            n_threads,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

impl StreamConfig {
    /// Photos whose shorter side is below this are skipped rather than upscaled.
    pub fn min_photo_side(&self) -> i64 {
        (self.image_size / 2).max(1)
    }

    fn validate(&self) -> Result<()> {
        let problem = if !(2..=16384).contains(&self.image_size) {
            format!("image size {} is outside 2..=16384", self.image_size)
        } else if self.batch_size == 0 {
            "batch size must be at least 1".to_string()
        } else if self.prefetch == 0 {
            "prefetch must be at least 1 batch".to_string()
        } else if self.n_threads == 0 {
            "decoding needs at least 1 thread".to_string()
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig(problem))
    }
}

/// Where a stream stands: the next photo it reads is number `position` of epoch `epoch`'s
/// order. Saved with a training checkpoint, it lets [`PhotoStream::resume`] continue exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamState {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Index into the epoch's shuffled order of the next file to read.
    pub position: usize,
}

/// A file left out of the stream, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPhoto {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for SkippedPhoto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipping {}: {}", self.path.display(), self.reason)
    }
}

/// One batch of the stream.
#[derive(Debug)]
pub struct Batch {
    /// `[batch_size, 3, image_size, image_size]` f32 RGB in [0, 255], on the CPU.
    pub images: Tensor,
    /// The epoch its photos come from.
    pub epoch: u64,
    /// Files found unusable since the previous batch, each reported once per stream.
    pub skipped: Vec<SkippedPhoto>,
}

type Message = Result<(Batch, StreamState)>;

/// Batches of random square crops of a list of photos, endless (epoch after epoch),
/// reproducible from the seed and resumable from [`PhotoStream::state`]. A background thread
/// decodes ahead on its own pool of `n_threads`, up to `prefetch` batches.
pub struct PhotoStream {
    config: StreamConfig,
    n_files: usize,
    state: StreamState,
    skipped: usize,
    receiver: Option<Receiver<Message>>,
    producer: Option<JoinHandle<()>>,
}

impl PhotoStream {
    /// Starts at the beginning of epoch 0. `files` is typically `find_photos(..)?.files`; its
    /// order matters (keep it sorted for reproducibility).
    pub fn new(config: StreamConfig, files: Vec<PathBuf>) -> Result<Self> {
        Self::resume(config, files, StreamState::default())
    }

    /// Continues from `state` (from [`PhotoStream::state`] of an earlier stream with the same
    /// config and files): the batches are exactly those the earlier stream would have made next.
    pub fn resume(config: StreamConfig, files: Vec<PathBuf>, state: StreamState) -> Result<Self> {
        config.validate()?;
        if files.len() < config.batch_size {
            return Err(Error::TooFewPhotos {
                found: files.len(),
                batch_size: config.batch_size,
            });
        }
        if state.position > files.len() {
            return Err(Error::InvalidState {
                position: state.position,
                total: files.len(),
            });
        }
        let state = normalized(state, files.len());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.n_threads)
            .thread_name(|i| format!("photo-decoder-{i}"))
            .start_handler(|_| lower_thread_priority())
            .build()
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        let (sender, receiver) = sync_channel(config.prefetch);
        let n_files = files.len();
        let producer = Producer {
            config,
            files,
            pool,
            known_bad: HashMap::new(),
            resized: HashMap::new(),
            cache_left: config.cache_bytes,
        };
        let handle = std::thread::Builder::new()
            .name("photo-stream".into())
            .spawn(move || {
                lower_thread_priority();
                producer.run(state, sender)
            })
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        Ok(Self {
            config,
            n_files,
            state,
            skipped: 0,
            receiver: Some(receiver),
            producer: Some(handle),
        })
    }

    /// The next batch, waiting for it only if decoding has fallen behind. Errors if an epoch
    /// from its start yields fewer usable photos than a batch (the stream then stays stopped).
    pub fn next_batch(&mut self) -> Result<Batch> {
        let received = match &self.receiver {
            Some(receiver) => receiver.recv(),
            None => return Err(Error::LoaderStopped(String::new())),
        };
        match received {
            Ok(Ok((batch, state))) => {
                self.state = state;
                self.skipped += batch.skipped.len();
                Ok(batch)
            }
            Ok(Err(error)) => {
                self.stop();
                Err(error)
            }
            Err(_) => Err(Error::LoaderStopped(self.stop())),
        }
    }

    /// The position after the last batch returned (the start state before the first).
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Distinct files skipped so far, as reported in the batches returned.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    pub fn config(&self) -> StreamConfig {
        self.config
    }

    /// Files in the stream, usable or not.
    pub fn n_files(&self) -> usize {
        self.n_files
    }

    /// Ends the producer; returns its panic message, if any, as `": message"`.
    fn stop(&mut self) -> String {
        // Dropping the receiver makes the producer's next send fail, which ends it.
        self.receiver = None;
        match self.producer.take().map(JoinHandle::join) {
            Some(Err(panic)) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                format!(": {message}")
            }
            _ => String::new(),
        }
    }
}

impl Drop for PhotoStream {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for PhotoStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhotoStream")
            .field("config", &self.config)
            .field("n_files", &self.n_files)
            .field("state", &self.state)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// The end of an epoch is the start of the next.
fn normalized(state: StreamState, n_files: usize) -> StreamState {
    if state.position >= n_files {
        StreamState {
            epoch: state.epoch + 1,
            position: 0,
        }
    } else {
        state
    }
}

/// The order in which epoch `epoch` visits the files (indices into the file list).
fn epoch_order(seed: u64, epoch: u64, n_files: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n_files).collect();
    SplitMix64::new(ORDER_DOMAIN, &[seed, epoch]).shuffle(&mut order);
    order
}

struct Producer {
    config: StreamConfig,
    files: Vec<PathBuf>,
    pool: rayon::ThreadPool,
    /// Files found unusable, with why: reported once, not read again.
    known_bad: HashMap<usize, String>,
    /// Photos decoded and resized (shorter side to the image size), by file.
    resized: HashMap<usize, Arc<DynamicImage>>,
    /// Bytes of `cache_bytes` not used by `resized` yet.
    cache_left: usize,
}

impl Producer {
    fn run(mut self, start: StreamState, sender: SyncSender<Message>) {
        let batch_size = self.config.batch_size;
        // Enough photos in flight to keep every thread busy and fill at least one batch.
        let window = batch_size.max(4 * self.config.n_threads);
        let StreamState {
            mut epoch,
            mut position,
        } = start;
        let mut images = Vec::with_capacity(batch_size);
        let mut skipped = Vec::new();
        loop {
            let order = epoch_order(self.config.seed, epoch, self.files.len());
            let whole_epoch = position == 0;
            let mut usable = 0;
            while position < order.len() {
                let end = (position + window).min(order.len());
                let chunk = &order[position..end];
                let loaded: Vec<Option<Result<Arc<DynamicImage>, String>>> =
                    self.pool.install(|| {
                        chunk
                            .par_iter()
                            .map(|&file| {
                                (!self.known_bad.contains_key(&file)).then(|| self.resized(file))
                            })
                            .collect()
                    });
                for (offset, (&file, outcome)) in chunk.iter().zip(loaded).enumerate() {
                    match outcome {
                        None => {}
                        Some(Err(reason)) => {
                            skipped.push(SkippedPhoto {
                                path: self.files[file].clone(),
                                reason: reason.clone(),
                            });
                            self.known_bad.insert(file, reason);
                        }
                        Some(Ok(image)) => {
                            usable += 1;
                            self.keep(file, &image);
                            images.push(self.crop(&image, file, epoch));
                            if images.len() == batch_size {
                                let Some(tensor) = models::pixels::images_to_batch(&images) else {
                                    unreachable!("crops are image_size squared");
                                };
                                let batch = Batch {
                                    images: tensor,
                                    epoch,
                                    skipped: std::mem::take(&mut skipped),
                                };
                                images.clear();
                                let next = StreamState {
                                    epoch,
                                    position: position + offset + 1,
                                };
                                if sender
                                    .send(Ok((batch, normalized(next, order.len()))))
                                    .is_err()
                                {
                                    return; // the consumer is gone
                                }
                            }
                        }
                    }
                }
                position = end;
            }
            images.clear(); // drop_last
            if whole_epoch && usable < batch_size {
                let _ = sender.send(Err(self.not_enough(usable)));
                return;
            }
            epoch += 1;
            position = 0;
        }
    }

    /// The photo resized, from the cache or decoded now.
    fn resized(&self, file: usize) -> Result<Arc<DynamicImage>, String> {
        if let Some(image) = self.resized.get(&file) {
            return Ok(Arc::clone(image));
        }
        load_resized(
            &self.files[file],
            self.config.image_size,
            self.config.min_photo_side(),
        )
        .map(Arc::new)
    }

    /// Caches a resized photo if it is new and fits.
    fn keep(&mut self, file: usize, image: &Arc<DynamicImage>) {
        let bytes = image.as_bytes().len();
        if bytes <= self.cache_left && !self.resized.contains_key(&file) {
            self.cache_left -= bytes;
            self.resized.insert(file, Arc::clone(image));
        }
    }

    /// The epoch's crop of a resized photo (the same for the same seed, epoch and file).
    fn crop(&self, image: &DynamicImage, file: usize, epoch: u64) -> DynamicImage {
        let rng = SplitMix64::new(CROP_DOMAIN, &[self.config.seed, epoch, file as u64]);
        random_crop(image, self.config.image_size, rng)
    }

    fn not_enough(&self, usable: usize) -> Error {
        let total = self.files.len();
        if usable > 0 {
            return Error::TooFewUsablePhotos {
                usable,
                total,
                batch_size: self.config.batch_size,
            };
        }
        let example = self
            .known_bad
            .iter()
            .min_by_key(|(&file, _)| file)
            .map_or_else(String::new, |(&file, reason)| {
                format!("{}: {reason}", self.files[file].display())
            });
        Error::NoUsablePhotos { total, example }
    }
}

/// Reads, decodes and resizes one photo (shorter side to `size`); the error is the reason to
/// skip it.
fn load_resized(path: &Path, size: i64, min_side: i64) -> Result<DynamicImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if is_truncated_jpeg(&bytes) {
        return Err("truncated jpeg (no end-of-image marker after the last scan)".into());
    }
    let image = models::pixels::decode(&bytes).map_err(|e| e.to_string())?;
    let (width, height) = (i64::from(image.width()), i64::from(image.height()));
    if width.min(height) < min_side {
        return Err(format!(
            "{width}x{height} is too small (shorter side under {min_side} pixels)"
        ));
    }
    // Shorter side to `size`, the other rounded to keep the aspect ratio.
    let (new_width, new_height) = if width <= height {
        (size, ((height * size + width / 2) / width).max(size))
    } else {
        (((width * size + height / 2) / height).max(size), size)
    };
    Ok(if (new_width, new_height) == (width, height) {
        image
    } else {
        image.resize_exact(new_width as u32, new_height as u32, FilterType::Triangle)
    })
}

/// A `size`-squared crop of a photo whose shorter side is `size`, at a position drawn from
/// `rng`.
fn random_crop(resized: &DynamicImage, size: i64, mut rng: SplitMix64) -> DynamicImage {
    let (width, height) = (i64::from(resized.width()), i64::from(resized.height()));
    let x = rng.below((width - size + 1) as u64) as u32;
    let y = rng.below((height - size + 1) as u64) as u32;
    resized.crop_imm(x, y, size as u32, size as u32)
}

/// Lowest CPU priority for the calling thread (Linux keeps a nice value per thread; elsewhere
/// it would apply to the whole process, so nothing is done). Best effort: a refusal only costs
/// speed.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; `who` 0 is the calling thread on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// The JPEG decoder conceals a cut-off file as grey blocks instead of failing; such a photo
/// would teach the network grey, so find it here: in an intact JPEG the last start-of-scan
/// marker (FF DA) is followed by an end-of-image marker (FF D9). Entropy-coded data cannot
/// contain either byte pair (an FF there is followed by 00 or a restart marker).
fn is_truncated_jpeg(bytes: &[u8]) -> bool {
    const START_OF_SCAN: [u8; 2] = [0xFF, 0xDA];
    const END_OF_IMAGE: [u8; 2] = [0xFF, 0xD9];
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    match bytes.windows(2).rposition(|pair| pair == START_OF_SCAN) {
        Some(last_scan) => !bytes[last_scan..]
            .windows(2)
            .any(|pair| pair == END_OF_IMAGE),
        None => false, // no image data at all: the decoder reports that
    }
}
