//! `atelier serve`: the styles over HTTP, as a JSON/image API and a page, on axum and tokio.
//!
//! Network worker threads own the networks (`worker`: on the CPU one per core, on CUDA one
//! per device); handlers on the tokio runtime check limits, decode and encode on blocking
//! threads in plain Rust (`codec`) and hand host tensors to the workers through one bounded
//! queue. A full queue answers 503 at once;
//! nothing is written to disk and no request names a server-side path.
//!
//! Invariants: depends on `models` and `infer` only; only worker threads run ATen's
//! parallel kernels; every error a client sees is JSON `{"error": "..."}` with a 4xx/5xx status.

mod app;
pub mod catalogue;
pub mod codec;
pub mod error;
pub mod metrics;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use models::Precision;
use tch::Device;

pub use catalogue::{Catalogue, StyleEntry, StyleKind};
pub use error::{Error, Result};

/// Places in the queue for thumbnails, beyond the admitted requests (`Config::queue`).
const THUMBNAIL_ROOM: usize = 64;

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Most pixels an image may declare in its header; larger ones are refused undecoded.
    pub max_pixels: u64,
    /// Largest `max_size` a request may ask for.
    pub max_side: u32,
    /// The longer side results get when a request gives no `max_size`.
    pub default_size: u32,
    /// Most parts of a multipart body.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 32 << 20,
            max_pixels: 50_000_000,
            max_side: 2048,
            default_size: 1024,
            max_parts: 8,
        }
    }
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port`; port 0 picks a free one (see `Server::addr`).
    pub bind: String,
    /// Every `*.safetensors` model file here is served beside the built-in styles.
    pub models_dir: Option<PathBuf>,
    /// When set, `/v1/*` and `/metrics` need `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub device: Device,
    pub precision: Precision,
    /// Threads of the network calls (split among the workers), and of image decoding and
    /// encoding.
    pub threads: usize,
    /// Network workers taking jobs from the one queue, each with its own copy of the networks
    /// and `threads / workers` (at least 1) intra-op threads (`Config::default_workers`).
    pub workers: usize,
    /// Most stylize requests admitted at once (waiting for or in the network); more get 503.
    pub queue: usize,
    /// Most images in one network call.
    pub max_batch: usize,
    /// How long a request waits for others of its size and style to share a network call.
    pub batch_window: Duration,
    /// Longest a stylize request may take from admission to answer; then 503.
    pub timeout: Duration,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let workers = Self::default_workers(Device::Cpu, threads);
        Self {
            bind: "127.0.0.1:8080".into(),
            models_dir: None,
            token: None,
            device: Device::Cpu,
            precision: Precision::F32,
            threads,
            workers,
            queue: 32,
            max_batch: Self::default_max_batch(Device::Cpu, threads, workers),
            batch_window: Duration::from_millis(5),
            timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// On the CPU one worker per thread, each running its network calls on one thread: the
    /// calls overlap decoding and encoding instead of stalling at every operator for a core
    /// that a codec thread holds (BENCHMARKS.md, "Serve"). On CUDA one worker per device.
    pub fn default_workers(device: Device, threads: usize) -> usize {
        match device {
            Device::Cpu => threads.max(1),
            _ => 1,
        }
    }

    /// One image per call for several CPU workers of one intra-op thread each, else 4. On one
    /// thread a batch of 4 is slower per image than 4 calls of one (at 16 clients on 2 cores
    /// the server reached 71% of the bare network with batches of up to 4 and 93% with one,
    /// BENCHMARKS.md "Serve"); with a thread team or on CUDA a batch is faster per image.
    pub fn default_max_batch(device: Device, threads: usize, workers: usize) -> usize {
        if device == Device::Cpu && workers > 1 && threads / workers.max(1) <= 1 {
            1
        } else {
            4
        }
    }
}

/// A server with its networks loaded and its port bound, not yet answering.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    state: Arc<app::AppState>,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    warnings: Vec<String>,
}

impl Server {
    /// Loads the networks on the worker thread and binds `config.bind`.
    pub fn bind(config: Config) -> Result<Self> {
        if config.queue == 0 || config.max_batch == 0 || config.threads == 0 || config.workers == 0
        {
            return Err(Error::Runtime(
                "the queue, the batch, the thread and the worker count must be at least 1".into(),
            ));
        }
        let files = match &config.models_dir {
            Some(dir) => catalogue::model_files(dir)?,
            None => Vec::new(),
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let worker_config = worker::WorkerConfig {
            device: config.device,
            precision: config.precision,
            workers: config.workers,
            threads: (config.threads / config.workers).max(1),
            max_batch: config.max_batch,
            window: config.batch_window,
        };
        // Room for the admitted requests and for thumbnails being rendered beside them.
        let capacity = config.queue + THUMBNAIL_ROOM;
        let worker::Started {
            models,
            style_picture_side,
            warnings,
            queue,
            threads: workers,
        } = worker::start(worker_config, files, capacity, metrics.clone())?;
        let catalogue = Catalogue::new(models, infer::builtin::DEFAULT_STYLE);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.clamp(1, 4))
            .thread_name("atelier-http")
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&config.bind))
            .map_err(|source| Error::Bind {
                addr: config.bind.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        let state = Arc::new(app::AppState::new(
            config,
            catalogue,
            queue,
            style_picture_side,
            metrics,
        ));
        Ok(Self {
            runtime,
            listener,
            state,
            workers,
            addr,
            warnings,
        })
    }

    /// The address it listens on (the chosen port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.state.catalogue
    }

    /// Model files of `--models` that were skipped, one message each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Answers requests until SIGINT or SIGTERM, then stops accepting, finishes the requests in
    /// flight and returns.
    pub fn run_until_signal(self) -> Result<()> {
        self.run(shutdown_signal())
    }

    /// Answers requests until `shutdown` completes, then stops accepting, finishes the requests
    /// in flight and stops the workers (each drains the queue until it is closed and empty).
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self {
            runtime,
            listener,
            state,
            workers,
            ..
        } = self;
        let router = app::router(state.clone());
        let result = runtime.block_on(async {
            let warm = tokio::spawn(app::render_thumbnails(state.clone()));
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await;
            warm.abort();
            served
        });
        // The tasks hold the queue's sender; the workers end once the last one is dropped.
        runtime.shutdown_timeout(Duration::from_secs(5));
        drop(state);
        // Join every worker before saying that one panicked.
        let panicked = workers
            .into_iter()
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count();
        if panicked > 0 {
            return Err(Error::Internal("a network worker panicked".into()));
        }
        result.map_err(|e| Error::Runtime(format!("the server failed: {e}")))
    }
}

/// A server answering on a thread of its own (benchmarks, embedding), until `stop`.
pub struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<Result<()>>,
}

impl Server {
    /// Answers requests on a new thread until `Running::stop`.
    pub fn spawn(self) -> Result<Running> {
        let addr = self.addr;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("atelier-serve".into())
            .spawn(move || {
                self.run(async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| Error::Runtime(format!("cannot start the server thread: {e}")))?;
        Ok(Running { addr, stop, thread })
    }
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes the requests in flight and waits for the server to end.
    pub fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| Error::Internal("the server thread panicked".into()))?
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
