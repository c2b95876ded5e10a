//! The network worker: one thread per device that owns the loaded networks and runs every
//! network call, fed by a bounded queue. Requests for the same network, style and image size
//! that arrive within a short window go through one call (dynamic batching).
//!
//! The worker is a plain thread, not a tokio task: ATen ops start an OpenMP team on whichever
//! thread runs them, and several such threads oversubscribe the cores (ARCHITECTURE.md, "Threads
//! and ATen"). Handlers decode to host tensors in plain Rust and encode host tensors back; only
//! this thread touches ATen's parallel kernels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    pub selection: Selection,
    /// `[3, H, W]` RGB in [0, 255], on the host.
    pub image: Tensor,
    /// Strength and colour preservation, applied per image after the network.
    pub finish: Finish,
    pub reply: oneshot::Sender<Reply>,
}

impl Job {
    /// Jobs with equal keys can share a network call. A style-vector source (arbitrary styles)
    /// would add its vector here and stack them into the call's `[B, 100]` input.
    fn batch_key(&self) -> (usize, Vec<u64>, Vec<i64>) {
        let weights = self.selection.weights.iter().map(|w| w.to_bits()).collect();
        (self.selection.model, weights, self.image.size())
    }
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub device: Device,
    pub precision: Precision,
    /// ATen intra-op threads of the network call.
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
    /// Jobs sent and not yet taken by the worker.
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

/// A worker that loaded its networks and waits for jobs.
pub struct Started {
    /// The networks, built-in first, in the order `Selection::model` counts them.
    pub models: Vec<ModelInfo>,
    /// One message per model file that was skipped.
    pub warnings: Vec<String>,
    pub queue: Queue,
    /// Ends once every `Queue` clone is dropped and the queued jobs are done.
    pub thread: JoinHandle<()>,
}

/// Loads the networks on a new worker thread and starts it.
pub fn start(
    config: WorkerConfig,
    model_files: Vec<std::path::PathBuf>,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> Result<Started> {
    let (sender, receiver) = mpsc::sync_channel::<Job>(capacity);
    let (loaded_tx, loaded_rx) = mpsc::channel();
    let depth = Arc::new(AtomicUsize::new(0));
    let incoming = Arc::new(AtomicUsize::new(0));
    let (worker_depth, worker_incoming) = (depth.clone(), incoming.clone());
    let thread = std::thread::Builder::new()
        .name("atelier-network".into())
        .spawn(move || {
            tch::set_num_threads(config.threads as i32);
            let loaded = load(&config, &model_files);
            let stylizers = match loaded {
                Ok((stylizers, infos, warnings)) => {
                    let _ = loaded_tx.send(Ok((infos, warnings)));
                    stylizers
                }
                Err(err) => {
                    let _ = loaded_tx.send(Err(err));
                    return;
                }
            };
            let mut worker = Worker {
                config,
                stylizers,
                receiver,
                pending: VecDeque::new(),
                depth: worker_depth,
                incoming: worker_incoming,
                metrics,
            };
            worker.run();
        })
        .map_err(|e| Error::Runtime(format!("cannot start the network thread: {e}")))?;
    let (infos, warnings) = loaded_rx
        .recv()
        .map_err(|_| Error::Runtime("the network thread stopped while loading".into()))??;
    Ok(Started {
        models: infos,
        warnings,
        queue: Queue {
            sender,
            depth,
            incoming,
        },
        thread,
    })
}

type Loaded = (Vec<Stylizer>, Vec<ModelInfo>, Vec<String>);

/// The built-in network first, then each model file; a file that is not a model is skipped
/// with a warning rather than keeping the others from being served.
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
    Ok((stylizers, infos, warnings))
}

struct Worker {
    config: WorkerConfig,
    stylizers: Vec<Stylizer>,
    receiver: Receiver<Job>,
    /// Jobs taken from the queue while gathering a batch of another kind; they go first next.
    pending: VecDeque<Job>,
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

    fn take(&mut self, job: Job) -> Job {
        self.depth.fetch_sub(1, Ordering::SeqCst);
        job
    }

    /// Waits for a job, then gathers the jobs of its kind that are pending, queued, or arrive
    /// within the window while other admitted requests are still decoding (with none on its
    /// way, waiting would only add latency), up to `max_batch`. `None` once the queue is
    /// closed and empty.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        let first = match self.pending.pop_front() {
            Some(job) => job,
            None => {
                let job = self.receiver.recv().ok()?;
                self.take(job)
            }
        };
        let key = first.batch_key();
        let mut batch = vec![first];
        let mut kept = VecDeque::new();
        while let Some(job) = self.pending.pop_front() {
            if batch.len() < self.config.max_batch && job.batch_key() == key {
                batch.push(job);
            } else {
                kept.push_back(job);
            }
        }
        self.pending = kept;
        let deadline = Instant::now() + self.config.window;
        while batch.len() < self.config.max_batch {
            let job = match self.receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline || self.incoming.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    let wait = (deadline - now).min(Duration::from_millis(1));
                    match self.receiver.recv_timeout(wait) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let job = self.take(job);
            if job.batch_key() == key {
                batch.push(job);
            } else {
                self.pending.push_back(job);
            }
        }
        Some(batch)
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        // A request that timed out or whose client left has dropped its receiver.
        let batch: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        match self.stylize(&batch) {
            Ok(images) => {
                let size = batch.len();
                self.metrics
                    .record_batch(size, started.elapsed().as_secs_f64());
                for (job, image) in batch.into_iter().zip(images) {
                    let _ = job.reply.send(Ok((image, size)));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }

    /// One network call for `batch` (all of one kind); returns host images in its order.
    fn stylize(&mut self, batch: &[Job]) -> Result<Vec<Tensor>> {
        let selection = &batch[0].selection;
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
        let _guard = tch::no_grad_guard();
        let images: Vec<&Tensor> = batch.iter().map(|job| &job.image).collect();
        let original = Tensor::f_stack(&images, 0)?
            .to_device(self.config.device)
            .to_kind(Kind::Float);
        let stylized = stylizer.stylize(&original)?;
        let mut out = Vec::with_capacity(batch.len());
        for (i, job) in batch.iter().enumerate() {
            let i = i as i64;
            let image = apply_finish(&original.get(i), stylized.get(i), job.finish);
            out.push(models::pixels::host_image(&image));
        }
        Ok(out)
    }
}

/// Strength and colour preservation for one `[3, H, W]` image, as `infer::Stylizer` applies
/// them: the stylizer fixes its `Finish` when it is built, and the requests of one batch may
/// each ask for their own.
fn apply_finish(original: &Tensor, stylized: Tensor, finish: Finish) -> Tensor {
    let mut out = stylized;
    if finish.preserve_color {
        // YCbCr with the original's Cb and Cr: changing only Y moves R, G and B equally.
        out = original + (luminance(&out) - luminance(original));
    }
    if finish.strength < 1.0 {
        out = original * (1.0 - finish.strength) + out * finish.strength;
    }
    out
}

/// ITU-R BT.601 luma of `[3, H, W]`, shaped `[1, H, W]`.
fn luminance(rgb: &Tensor) -> Tensor {
    let coefficients = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .to_device(rgb.device())
        .view([3, 1, 1]);
    (rgb * coefficients).sum_dim_intlist(&[0i64][..], true, Kind::Float)
}
