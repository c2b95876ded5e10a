//! The network workers: plain threads that each own a copy of the loaded networks and run the
//! network calls, all fed by one bounded queue. Requests for the same network, style and image
//! size that arrive within a short window go through one call (dynamic batching, per worker).
//! A style picture goes through the style predictor when its job is taken from the queue, and
//! its vector joins the batch key of the arbitrary-style network.
//!
//! On the CPU the default is one worker per core with one intra-op thread each: a worker's
//! network call then never waits at an operator for a core that a codec or HTTP thread holds,
//! and one worker's call overlaps another request's decoding and encoding. On CUDA one worker
//! runs per device.
//!
//! Workers are plain threads, not tokio tasks: ATen ops start an OpenMP team on whichever
//! thread runs them, sized by that thread's own setting (ARCHITECTURE.md, "Threads and ATen").
//! Handlers decode to host tensors in plain Rust and encode host tensors back; only worker
//! threads touch ATen's parallel kernels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::DynamicImage;
use infer::style_source::ArbitraryNetworks;
use infer::{Finish, StyleMix, Stylizer};
use models::Precision;
use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;

use crate::catalogue::{ModelInfo, Selection};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What the worker answers: the stylized image, `[3, H, W]` f32 contiguous on the host, and the
/// number of images in the network call it went through.
pub type Reply = std::result::Result<(Tensor, usize), String>;

/// One image to stylize.
pub struct Job {
    pub style: JobStyle,
    /// `[3, H, W]` RGB in [0, 255], on the host.
    pub image: Tensor,
    /// Strength and colour preservation, applied per image after the network (with a style
    /// picture, strength moves its vector towards the photo's own instead).
    pub finish: Finish,
    pub reply: oneshot::Sender<Reply>,
}

/// Where a job's style comes from.
pub enum JobStyle {
    /// Styles of one loaded network (`Selection::model`), mixed by weight.
    Mix(Selection),
    /// The arbitrary-style network, conditioned on a style picture's vector.
    Picture(StylePicture),
}

/// A style picture, and below strength 1 the photo, as the style predictor sees them
/// (`models::predictor::prepare_style_image`): `[1, 3, S, S]` host tensors.
pub struct StylePicture {
    picture: Tensor,
    photo: Option<Tensor>,
}

impl StylePicture {
    /// Prepares `picture` and, below `strength` 1, `photo` (decoded and resized as it is
    /// stylized) at the predictor's input `side`. Plain Rust image work, for a codec thread.
    pub fn prepare(picture: &DynamicImage, photo: &DynamicImage, strength: f64, side: u32) -> Self {
        let prepare = |image| models::predictor::prepare_style_image(image, side);
        Self {
            picture: prepare(picture),
            photo: (strength < 1.0).then(|| prepare(photo)),
        }
    }
}

/// The network a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    /// `Selection::model`: the built-in network or a model file.
    Model(usize),
    Arbitrary,
}

/// Jobs with equal keys share a network call: the network, the bits of its style weights or
/// style vector, and the image's size.
type BatchKey = (Network, Vec<u64>, Vec<i64>);

/// A job taken from the queue, its style resolved (a style picture's vector computed).
struct Taken {
    job: Job,
    /// The style vector of a style picture, `[D]` f32 on the host.
    vector: Option<Tensor>,
    key: BatchKey,
}

/// How the workers run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub device: Device,
    pub precision: Precision,
    /// Network workers taking jobs from the one queue, each with its own networks.
    pub workers: usize,
    /// ATen intra-op threads of each worker's network calls.
    pub threads: usize,
    /// Most images in one network call.
    pub max_batch: usize,
    /// How long the first job of a batch waits for others of its kind.
    pub window: Duration,
}

/// The sending side of the queue, shared by the handlers.
#[derive(Clone)]
pub struct Queue {
    sender: SyncSender<Job>,
    /// Jobs sent and not yet taken by a worker.
    depth: Arc<AtomicUsize>,
    /// Admitted requests still decoding: jobs the worker may wait for to fill a batch.
    incoming: Arc<AtomicUsize>,
}

/// Counts one request as on its way to the queue until dropped (pushed, failed or timed out).
pub struct Incoming(Arc<AtomicUsize>);

impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Queue {
    /// Announces a job that will be pushed once its image is decoded.
    pub fn incoming(&self) -> Incoming {
        self.incoming.fetch_add(1, Ordering::SeqCst);
        Incoming(self.incoming.clone())
    }

    /// Queues `job`. The handlers admit at most the queue's capacity of requests at a time, so
    /// this does not block; a full queue is still refused rather than waited on.
    pub fn push(&self, job: Job) -> Result<()> {
        self.depth.fetch_add(1, Ordering::SeqCst);
        self.sender.try_send(job).map_err(|err| {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            match err {
                mpsc::TrySendError::Full(_) => Error::Busy("the queue is full".into()),
                mpsc::TrySendError::Disconnected(_) => {
                    Error::Internal("the network worker has stopped".into())
                }
            }
        })
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

/// Workers that loaded their networks and wait for jobs.
pub struct Started {
    /// The networks, built-in first, in the order `Selection::model` counts them.
    pub models: Vec<ModelInfo>,
    /// The side of the square a style picture is prepared at (`StylePicture::prepare`).
    pub style_picture_side: u32,
    /// One message per model file that was skipped.
    pub warnings: Vec<String>,
    pub queue: Queue,
    /// Each ends once every `Queue` clone is dropped and the queued jobs are done.
    pub threads: Vec<JoinHandle<()>>,
}

/// What the workers take jobs from. One worker at a time holds it while it gathers a batch and
/// lets go before the network call, so the others gather theirs meanwhile.
struct Intake {
    receiver: Receiver<Job>,
    /// Jobs taken from the queue while gathering a batch of another kind; they go first next,
    /// in whichever worker is free.
    pending: VecDeque<Taken>,
}

/// What a worker thread reports once it loaded its networks.
type LoadReport = Result<(Vec<ModelInfo>, Vec<String>, u32)>;

/// Starts `config.workers` worker threads, each loading its own copy of the networks (a
/// `Stylizer` keeps its current style mix, so workers cannot share one).
pub fn start(
    config: WorkerConfig,
    model_files: Vec<std::path::PathBuf>,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> Result<Started> {
    if config.workers == 0 || config.threads == 0 {
        return Err(Error::Runtime(
            "the workers and their thread count must be at least 1".into(),
        ));
    }
    let (sender, receiver) = mpsc::sync_channel::<Job>(capacity);
    let intake = Arc::new(Mutex::new(Intake {
        receiver,
        pending: VecDeque::new(),
    }));
    let depth = Arc::new(AtomicUsize::new(0));
    let incoming = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::with_capacity(config.workers);
    let mut reports = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let (loaded_tx, loaded_rx) = mpsc::channel::<LoadReport>();
        let (config, files) = (config.clone(), model_files.clone());
        let (intake, depth, incoming) = (intake.clone(), depth.clone(), incoming.clone());
        let metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name(format!("atelier-network-{index}"))
            .spawn(move || {
                // ATen's thread count is per thread: this one's network calls use `threads`.
                tch::set_num_threads(config.threads as i32);
                let loaded = match load(&config, &files) {
                    Ok(loaded) => loaded,
                    Err(err) => {
                        let _ = loaded_tx.send(Err(err));
                        return;
                    }
                };
                let side = loaded.style_picture_side;
                let _ = loaded_tx.send(Ok((loaded.infos, loaded.warnings, side)));
                let mut worker = Worker {
                    config,
                    stylizers: loaded.stylizers,
                    arbitrary: loaded.arbitrary,
                    intake,
                    depth,
                    incoming,
                    metrics,
                };
                worker.run();
            })
            .map_err(|e| Error::Runtime(format!("cannot start a network thread: {e}")))?;
        threads.push(thread);
        reports.push(loaded_rx);
    }
    // Every worker loads the same files: the first one's report names them. On an error the
    // sender is dropped here, so the workers that did load see the queue closed and end.
    let mut first = None;
    for report in reports {
        let loaded = report
            .recv()
            .map_err(|_| Error::Runtime("a network thread stopped while loading".into()))??;
        first.get_or_insert(loaded);
    }
    let (infos, warnings, style_picture_side) =
        first.ok_or_else(|| Error::Internal("no network worker was started".into()))?;
    Ok(Started {
        models: infos,
        style_picture_side,
        warnings,
        queue: Queue {
            sender,
            depth,
            incoming,
        },
        threads,
    })
}

/// The worker's networks.
struct Loaded {
    stylizers: Vec<Stylizer>,
    /// The arbitrary-style transformer with its style predictor.
    arbitrary: Stylizer,
    /// The predictor's input side.
    style_picture_side: u32,
    infos: Vec<ModelInfo>,
    warnings: Vec<String>,
}

/// The built-in network first, then each model file; a file that is not a model is skipped
/// with a warning rather than keeping the others from being served. Then the arbitrary-style
/// pair, for style pictures.
fn load(config: &WorkerConfig, files: &[std::path::PathBuf]) -> Result<Loaded> {
    let builtin = infer::builtin::load(config.device)?;
    let mut stylizers = vec![];
    let mut infos = vec![];
    let mut warnings = vec![];
    let mut add = |model: models::Model, name: String| -> Result<()> {
        infos.push(ModelInfo {
            name,
            styles: model.meta.styles.clone(),
        });
        let mix = StyleMix::single(0, &model.meta.styles);
        stylizers.push(Stylizer::new(
            model,
            config.device,
            config.precision,
            mix,
            Finish::default(),
        )?);
        Ok(())
    };
    add(builtin, infer::builtin::NAME.to_string())?;
    for path in files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match models::Model::load(path, config.device) {
            Ok(model) if !model.meta.styles.is_empty() => add(model, name)?,
            Ok(_) => warnings.push(format!(
                "{}: the model has no styles; skipped",
                path.display()
            )),
            Err(err) => warnings.push(format!("{err}; skipped")),
        }
    }
    let networks = ArbitraryNetworks::load(config.device)?;
    let style_picture_side = u32::try_from(networks.predictor.spec().input_size)
        .map_err(|_| Error::Internal("the style predictor's input size is out of range".into()))?;
    // A placeholder vector until the first style picture sets one.
    let vector = Tensor::zeros([networks.vector_dim()? as i64], (Kind::Float, Device::Cpu));
    let arbitrary = Stylizer::with_style_vector(
        networks.transformer,
        networks.predictor,
        config.device,
        config.precision,
        &vector,
        PICTURE_LABEL,
        Finish::default(),
    )?;
    Ok(Loaded {
        stylizers,
        arbitrary,
        style_picture_side,
        infos,
        warnings,
    })
}

/// How answers name a style picture's style.
pub const PICTURE_LABEL: &str = "picture";

struct Worker {
    config: WorkerConfig,
    stylizers: Vec<Stylizer>,
    arbitrary: Stylizer,
    intake: Arc<Mutex<Intake>>,
    depth: Arc<AtomicUsize>,
    incoming: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(&mut self) {
        while let Some(batch) = self.next_batch() {
            self.run_batch(batch);
        }
    }

    /// Takes `job` off the queue's count and resolves its style: a style picture goes through
    /// the predictor here. `None` when it needs no network call (its client left, or the
    /// predictor failed and it was answered).
    fn take(&self, job: Job) -> Option<Taken> {
        self.depth.fetch_sub(1, Ordering::SeqCst);
        if job.reply.is_closed() {
            return None;
        }
        let size = job.image.size();
        let (vector, key) = match &job.style {
            JobStyle::Mix(selection) => {
                let weights = selection.weights.iter().map(|w| w.to_bits()).collect();
                (None, (Network::Model(selection.model), weights, size))
            }
            JobStyle::Picture(picture) => match self.picture_vector(picture, job.finish.strength) {
                Ok((vector, bits)) => (Some(vector), (Network::Arbitrary, bits, size)),
                Err(err) => {
                    let _ = job.reply.send(Err(err.to_string()));
                    return None;
                }
            },
        };
        Some(Taken { job, vector, key })
    }

    /// The vector a style picture conditions the arbitrary network with: the predictor's, or
    /// below strength 1 interpolated towards the photo's own (as `atelier stylize
    /// --style-image` does), with the bits of its values for the batch key. Both pictures go
    /// through one predictor call.
    fn picture_vector(&self, picture: &StylePicture, strength: f64) -> Result<(Tensor, Vec<u64>)> {
        let predictor = self
            .arbitrary
            .style_predictor()
            .ok_or_else(|| Error::Internal("the arbitrary network has no predictor".into()))?;
        let mut inputs = vec![&picture.picture];
        inputs.extend(&picture.photo);
        let _guard = tch::no_grad_guard();
        let batch = Tensor::f_cat(&inputs, 0)?.to_device(self.config.device);
        let vectors = predictor
            .net
            .forward(&batch)?
            .to_device(Device::Cpu)
            .to_kind(Kind::Float);
        let style = vectors.get(0);
        let vector = match picture.photo {
            Some(_) => infer::interpolate_style_vector(&style, &vectors.get(1), strength),
            None => style,
        };
        let bits = Vec::<f32>::try_from(&vector)?
            .iter()
            .map(|v| u64::from(v.to_bits()))
            .collect();
        Ok((vector, bits))
    }

    /// Waits for a job, then gathers the jobs of its kind that are pending, queued, or arrive
    /// within the window while other admitted requests are still decoding (with none on its
    /// way, waiting would only add latency), up to this worker's share (`share`). `None` once
    /// the queue is closed and empty. Holds the intake throughout, so workers gather one after
    /// another.
    fn next_batch(&self) -> Option<Vec<Taken>> {
        // A worker that panicked mid-gathering left the intake whole: jobs are moved, not split.
        let mut intake = self
            .intake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Intake { receiver, pending } = &mut *intake;
        let first = loop {
            if let Some(taken) = pending.pop_front() {
                break taken;
            }
            let job = receiver.recv().ok()?;
            if let Some(taken) = self.take(job) {
                break taken;
            }
        };
        let key = first.key.clone();
        let mut batch = vec![first];
        let mut kept = VecDeque::new();
        while let Some(taken) = pending.pop_front() {
            if batch.len() < self.share(batch.len(), pending.len()) && taken.key == key {
                batch.push(taken);
            } else {
                kept.push_back(taken);
            }
        }
        *pending = kept;
        let deadline = Instant::now() + self.config.window;
        while batch.len() < self.share(batch.len(), pending.len()) {
            let job = match receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline || self.incoming.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    let wait = (deadline - now).min(Duration::from_millis(1));
                    match receiver.recv_timeout(wait) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let Some(taken) = self.take(job) else {
                continue;
            };
            if taken.key == key {
                batch.push(taken);
            } else {
                pending.push_back(taken);
            }
        }
        Some(batch)
    }

    /// The most images this worker's next call takes: `max_batch`, or with several workers its
    /// even part of the jobs in hand (`taken`), set aside, queued or decoding. A worker with
    /// one intra-op thread gains little from a larger call, while the job it keeps from an idle
    /// worker waits for the whole call: at 4 clients on 2 workers, one batch of 4 would leave
    /// the other worker without work.
    fn share(&self, taken: usize, pending: usize) -> usize {
        if self.config.workers == 1 {
            return self.config.max_batch;
        }
        let waiting = taken
            + pending
            + self.depth.load(Ordering::SeqCst)
            + self.incoming.load(Ordering::SeqCst);
        waiting
            .div_ceil(self.config.workers)
            .clamp(1, self.config.max_batch)
    }

    fn run_batch(&mut self, batch: Vec<Taken>) {
        // A request that timed out or whose client left has dropped its receiver.
        let batch: Vec<Taken> = batch
            .into_iter()
            .filter(|t| !t.job.reply.is_closed())
            .collect();
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        match self.stylize(&batch) {
            Ok(images) => {
                let size = batch.len();
                self.metrics
                    .record_batch(size, started.elapsed().as_secs_f64());
                for (taken, image) in batch.into_iter().zip(images) {
                    let _ = taken.job.reply.send(Ok((image, size)));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for taken in batch {
                    let _ = taken.job.reply.send(Err(message.clone()));
                }
            }
        }
    }

    /// One network call for `batch` (all of one key); returns host images in its order.
    fn stylize(&mut self, batch: &[Taken]) -> Result<Vec<Tensor>> {
        let first = &batch[0];
        let stylizer = match (&first.job.style, &first.vector) {
            (JobStyle::Mix(selection), _) => {
                let stylizer = self
                    .stylizers
                    .get_mut(selection.model)
                    .ok_or_else(|| Error::Internal(format!("no network {}", selection.model)))?;
                if stylizer.mix().weights != selection.weights {
                    stylizer.set_mix(StyleMix {
                        weights: selection.weights.clone(),
                        label: selection.label.clone(),
                    })?;
                }
                stylizer
            }
            (JobStyle::Picture(_), Some(vector)) => {
                self.arbitrary.set_style_vector(vector, PICTURE_LABEL)?;
                &mut self.arbitrary
            }
            (JobStyle::Picture(_), None) => {
                return Err(Error::Internal("a style picture without its vector".into()))
            }
        };
        let _guard = tch::no_grad_guard();
        let images: Vec<&Tensor> = batch.iter().map(|t| &t.job.image).collect();
        let original = Tensor::f_stack(&images, 0)?
            .to_device(self.config.device)
            .to_kind(Kind::Float);
        // The stylizer's own finish is the default (none): each request brings its own.
        let stylized = stylizer.stylize(&original)?;
        let mut out = Vec::with_capacity(batch.len());
        for (i, taken) in batch.iter().enumerate() {
            let finish = match taken.job.style {
                JobStyle::Mix(_) => taken.job.finish,
                // Its strength acted on the vector (`picture_vector`).
                JobStyle::Picture(_) => taken.job.finish.after_style_vector(),
            };
            let i = i as i64;
            let image = finish.apply(&original.get(i), stylized.get(i));
            out.push(models::pixels::host_image(&image));
        }
        Ok(out)
    }
}
