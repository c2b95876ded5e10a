//! Many images through one model as a three-stage pipeline: a pool of decoders, the device
//! (same-size images batched, huge ones tiled), and a pool of encoders, joined by bounded
//! channels so each stage works while the others do and memory stays bounded.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::image_io::{encode, Resize};
use crate::jobs::{Job, Source, Target};
use crate::stylizer::Stylizer;
use crate::tiling::{
    activation_bytes_per_pixel, memory_budget, stylize_tiled, tile_side, TileMode,
};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub resize: Resize,
    pub tile: TileMode,
    /// JPEG quality, 1-100.
    pub quality: u8,
    /// Most images run through the network at once (same size only).
    pub max_batch: usize,
    /// Threads of each of the decode and encode pools.
    pub threads: usize,
    /// Bytes a forward pass may use; `None` asks the system (see `tiling::memory_budget`).
    pub memory_budget: Option<u64>,
    /// Pictures whose header declares more pixels are refused before decoding (see
    /// `tiling::default_max_pixels`).
    pub max_pixels: u64,
    /// Set to non-zero (by a signal handler) to stop: no new input is started, the ones in
    /// flight are finished and written. The inputs not started count neither as written nor
    /// as failed.
    pub interrupt: Option<Arc<AtomicUsize>>,
    /// Frames in a folder: blend each output with the previous one (see `smoother::Smoother`).
    /// Above 0 the inputs run one at a time, in order.
    pub smooth: f64,
}

impl PipelineOptions {
    /// Whether the run was told to stop before starting another input.
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|signal| signal.load(Ordering::SeqCst) != 0)
    }
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            resize: Resize::default(),
            tile: TileMode::Auto,
            quality: 90,
            max_batch: 4,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            memory_budget: None,
            max_pixels: crate::tiling::default_max_pixels(),
            interrupt: None,
            smooth: 0.0,
        }
    }
}

/// One written output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    pub input: String,
    pub output: String,
    /// `[width, height]` of the output.
    pub size: [u32; 2],
    /// Time spent on this image: decode, its share of the network, encode and write.
    pub seconds: f64,
    pub device: String,
    pub precision: String,
}

/// One input that could not be stylized; the others go on.
#[derive(Debug)]
pub struct Failure {
    pub input: String,
    pub error: Error,
}

pub type Outcome = std::result::Result<Record, Failure>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub written: usize,
    pub failed: usize,
}

struct Decoded {
    index: usize,
    image: Tensor,
    seconds: f64,
}

struct Styled {
    index: usize,
    image: Tensor,
    seconds: f64,
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

/// Runs every job; `on_done` hears about each output or failure as it happens (from any of
/// the pipeline's threads).
pub fn run(
    stylizer: &Stylizer,
    jobs: &[Job],
    options: &PipelineOptions,
    on_done: &(dyn Fn(Outcome) + Sync),
) -> Result<Summary> {
    if options.smooth > 0.0 {
        return Ok(run_in_order(stylizer, jobs, options, on_done));
    }
    run_worker(stylizer, jobs, &AtomicUsize::new(0), options, on_done)
}

/// Runs every job on several workers (one per stylizer, each on its own device, e.g. one per
/// GPU) that take the next job from one shared queue, so a faster device does more. Each
/// worker has its own decoders, network thread and encoders, with `options.threads` split
/// between them; a CPU worker's network gets its share of the threads. With `smooth` the
/// jobs run in order on the first worker.
pub fn run_workers(
    stylizers: &mut [Stylizer],
    jobs: &[Job],
    options: &PipelineOptions,
    on_done: &(dyn Fn(Outcome) + Sync),
) -> Result<Summary> {
    let count = stylizers.len();
    match stylizers {
        [] => return Err(Error::Invalid("no device to run on".into())),
        [one] => return run(one, jobs, options, on_done),
        [first, ..] if options.smooth > 0.0 => {
            return Ok(run_in_order(first, jobs, options, on_done))
        }
        _ => {}
    }
    let queue = AtomicUsize::new(0);
    let options = PipelineOptions {
        threads: (options.threads / count).max(1),
        ..options.clone()
    };
    let summaries: Vec<Result<Summary>> = std::thread::scope(|scope| {
        let workers: Vec<_> = stylizers
            .iter_mut()
            .map(|stylizer| {
                let (queue, options) = (&queue, &options);
                scope.spawn(move || {
                    let stylizer = &*stylizer;
                    // The network's thread count is the calling thread's (OpenMP).
                    if stylizer.device() == Device::Cpu {
                        tch::set_num_threads(options.threads as i32);
                    }
                    run_worker(stylizer, jobs, queue, options, on_done)
                })
            })
            .collect();
        join_workers(workers)
    });
    let mut total = Summary::default();
    for summary in summaries {
        let summary = summary?;
        total.written += summary.written;
        total.failed += summary.failed;
    }
    Ok(total)
}

/// Waits for every worker thread; one that panicked is an error.
pub(crate) fn join_workers<T>(
    workers: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>,
) -> Vec<Result<T>> {
    workers
        .into_iter()
        .map(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("a worker thread panicked".into())))
        })
        .collect()
}

/// One worker: decoders taking jobs from `queue` → the network → encoders.
fn run_worker(
    stylizer: &Stylizer,
    jobs: &[Job],
    queue: &AtomicUsize,
    options: &PipelineOptions,
    on_done: &(dyn Fn(Outcome) + Sync),
) -> Result<Summary> {
    let threads = options.threads.max(1);
    let pool = |name: &'static str| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("{name}-{i}"))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {name} threads: {e}")))
    };
    let (decode_pool, encode_pool) = (pool("decode")?, pool("encode")?);
    let written = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let count = |outcome: Outcome| {
        let counter = if outcome.is_ok() { &written } else { &failed };
        counter.fetch_add(1, Ordering::Relaxed);
        on_done(outcome);
    };
    let fail = |index: usize, error: Error| {
        count(Err(Failure {
            input: jobs[index].source.display(),
            error,
        }))
    };
    let labels = (
        device_name(stylizer.device()),
        stylizer.precision().to_string(),
    );

    std::thread::scope(|scope| {
        let (decoded_tx, decoded_rx) = sync_channel::<Decoded>(threads.max(2));
        let (styled_tx, styled_rx) = sync_channel::<Styled>(threads.max(2));
        scope.spawn(|| {
            decode_pool.install(|| {
                // A signal stops the taking of new inputs; those in flight finish.
                let next = || {
                    Some(queue.fetch_add(1, Ordering::Relaxed))
                        .filter(|&i| i < jobs.len() && !options.interrupted())
                };
                std::iter::from_fn(next)
                    .par_bridge()
                    .for_each_with(decoded_tx, |tx, index| {
                        let job = &jobs[index];
                        let start = Instant::now();
                        match read_image(&job.source, &options.resize, options.max_pixels) {
                            Ok(image) => {
                                let seconds = start.elapsed().as_secs_f64();
                                // The device stage hanging up means it is finishing; nothing to do.
                                let _ = tx.send(Decoded {
                                    index,
                                    image,
                                    seconds,
                                });
                            }
                            Err(error) => fail(index, error),
                        }
                    })
            })
        });
        scope.spawn(|| {
            encode_pool.install(|| {
                styled_rx.into_iter().par_bridge().for_each(|styled| {
                    let start = Instant::now();
                    let job = &jobs[styled.index];
                    match write_image(&styled.image, job, options.quality) {
                        Ok((width, height)) => count(Ok(Record {
                            input: job.source.display(),
                            output: job.target.display(),
                            size: [width, height],
                            seconds: styled.seconds + start.elapsed().as_secs_f64(),
                            device: labels.0.clone(),
                            precision: labels.1.clone(),
                        })),
                        Err(error) => fail(styled.index, error),
                    }
                })
            })
        });
        device_stage(stylizer, options, decoded_rx, styled_tx, &fail);
    });
    Ok(Summary {
        written: written.into_inner(),
        failed: failed.into_inner(),
    })
}

/// One input at a time, in order, each output smoothed with the previous one: what `--smooth`
/// on a folder of frames needs (the pipeline above finishes images in any order).
fn run_in_order(
    stylizer: &Stylizer,
    jobs: &[Job],
    options: &PipelineOptions,
    on_done: &(dyn Fn(Outcome) + Sync),
) -> Summary {
    let mut smoother = crate::smoother::Smoother::new(options.smooth);
    let mut summary = Summary::default();
    for job in jobs {
        if options.interrupted() {
            break;
        }
        let start = Instant::now();
        let result = read_image(&job.source, &options.resize, options.max_pixels)
            .and_then(|image| stylizer.stylize(&image.unsqueeze(0)))
            .and_then(|styled| {
                let frame = smoother.apply(styled.squeeze_dim(0).to_device(Device::Cpu));
                write_image(&frame, job, options.quality)
            });
        match result {
            Ok((width, height)) => {
                summary.written += 1;
                on_done(Ok(Record {
                    input: job.source.display(),
                    output: job.target.display(),
                    size: [width, height],
                    seconds: start.elapsed().as_secs_f64(),
                    device: device_name(stylizer.device()),
                    precision: stylizer.precision().to_string(),
                }));
            }
            Err(error) => {
                summary.failed += 1;
                on_done(Err(Failure {
                    input: job.source.display(),
                    error,
                }));
            }
        }
    }
    summary
}

/// Takes what the decoders have ready (waiting only for the first), groups it by size, and runs
/// each group as batches that fit the memory budget; images over the budget are tiled.
fn device_stage(
    stylizer: &Stylizer,
    options: &PipelineOptions,
    decoded: Receiver<Decoded>,
    styled: SyncSender<Styled>,
    fail: &dyn Fn(usize, Error),
) {
    let budget = options
        .memory_budget
        .unwrap_or_else(|| memory_budget(stylizer.device()));
    let bytes_per_pixel =
        activation_bytes_per_pixel(stylizer.model().net.spec(), stylizer.precision());
    let max_batch = options.max_batch.max(1);
    while let Ok(first) = decoded.recv() {
        let mut ready = vec![first];
        while ready.len() < max_batch * 4 {
            match decoded.try_recv() {
                Ok(item) => ready.push(item),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        while !ready.is_empty() {
            let size = ready[0].image.size();
            let (same, rest): (Vec<Decoded>, Vec<Decoded>) =
                ready.into_iter().partition(|d| d.image.size() == size);
            ready = rest;
            let (height, width) = (size[1], size[2]);
            if let Some(tile) = tile_side(options.tile, height, width, bytes_per_pixel, budget) {
                for item in same {
                    let start = Instant::now();
                    let stats_pixels = (budget / bytes_per_pixel).max((tile * tile) as u64);
                    match stylize_tiled(stylizer, &item.image, tile, stats_pixels) {
                        Ok(image) => {
                            let seconds = item.seconds + start.elapsed().as_secs_f64();
                            let _ = styled.send(Styled {
                                index: item.index,
                                image,
                                seconds,
                            });
                        }
                        Err(error) => fail(item.index, error),
                    }
                }
                continue;
            }
            let per_image = (height * width) as u64 * bytes_per_pixel;
            let fits = (budget / per_image.max(1)).clamp(1, max_batch as u64) as usize;
            for batch in same.chunks(fits) {
                run_batch(stylizer, batch, &styled, fail);
            }
        }
    }
}

fn run_batch(
    stylizer: &Stylizer,
    batch: &[Decoded],
    styled: &SyncSender<Styled>,
    fail: &dyn Fn(usize, Error),
) {
    let start = Instant::now();
    let images: Vec<&Tensor> = batch.iter().map(|d| &d.image).collect();
    let result = stylizer.stylize(&Tensor::stack(&images, 0));
    let share = start.elapsed().as_secs_f64() / batch.len() as f64;
    match result {
        Ok(out) => {
            for (i, item) in batch.iter().enumerate() {
                let _ = styled.send(Styled {
                    index: item.index,
                    // Contiguous host f32 here, so the encoding thread needs no ATen op.
                    image: models::pixels::host_image(&out.get(i as i64)),
                    seconds: item.seconds + share,
                });
            }
        }
        Err(error) => {
            let message = error.to_string();
            for item in batch {
                fail(item.index, Error::Invalid(message.clone()));
            }
        }
    }
}

/// Reads and decodes an image (EXIF orientation applied), resizes it, and returns `[3, H, W]`.
/// An image whose header declares more than `max_pixels` is refused before decoding.
pub fn read_image(source: &Source, resize: &Resize, max_pixels: u64) -> Result<Tensor> {
    let (bytes, path) = match source {
        Source::File(path) => (
            std::fs::read(path).map_err(|e| Error::Read {
                path: path.clone(),
                source: e,
            })?,
            path.clone(),
        ),
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Read {
                    path: "-".into(),
                    source: e,
                })?;
            (bytes, "-".into())
        }
    };
    let image = models::pixels::decode_within(&bytes, max_pixels).map_err(|e| Error::Decode {
        path,
        reason: match e {
            models::Error::Decode(reason) => reason,
            other => other.to_string(),
        },
    })?;
    Ok(models::pixels::image_to_tensor(&resize.apply(image)))
}

/// Encodes `[3, H, W]` and writes it to the job's target: a temporary name renamed into
/// place, so a failure never leaves a half-written file. Returns the written size.
pub fn write_image(image: &Tensor, job: &Job, quality: u8) -> Result<(u32, u32)> {
    let rgb = models::pixels::tensor_to_image(image)?;
    let name = job.target.display();
    let bytes = encode(&rgb, job.format, quality).map_err(|reason| Error::Encode {
        path: name.clone().into(),
        reason,
    })?;
    match &job.target {
        Target::File(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::Write {
                    path: parent.to_path_buf(),
                    source: e,
                })?;
            }
            models::file::write_atomically(path, &bytes)?;
        }
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|_| out.flush())
                .map_err(|e| Error::Write {
                    path: "-".into(),
                    source: e,
                })?;
        }
    }
    Ok((rgb.width(), rgb.height()))
}
