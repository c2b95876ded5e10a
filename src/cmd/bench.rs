//! `atelier bench`: times one piece of Atelier in-process (the network, a whole file, a
//! training step, the photo stream, a video) and prints one JSON line per timed run and a
//! summary line with the median and the process's peak resident memory. `bench/run.py` drives
//! it side by side with PyTorch and ONNX Runtime and writes `BENCHMARKS.md`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use infer::{Finish, Job, OutputFormat, Resize, Source, StyleMix, Stylizer, Target};
use models::vgg::{Vgg, VggKind};
use models::{Model, ModelMeta, NetSpec, Precision, StylePredictor};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::common::{at_least_one, DeviceArg};
use super::exit::DuringWork;
use super::out;

/// `RunArgs` with a benchmark's defaults: the CPU and 2 threads, so a timing does not depend
/// on what the machine happens to have (`bench/run.py` passes its own).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchRunArgs {
    /// cpu, cuda or cuda:N
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: DeviceArg,
    /// Arithmetic: f32, bf16 or f16 (CUDA)
    #[arg(long, value_name = "PRECISION", default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Intra-op threads (and decoding threads for `data`)
    #[arg(long, value_name = "N", default_value = "2", value_parser = at_least_one)]
    pub threads: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    /// The network alone on a random batch already in memory
    Infer,
    /// Read and decode --input, stylize, encode and write a JPEG
    File,
    /// One optimizer step of training (loss network on random weights, random batches)
    Train,
    /// The training photo stream alone: decode, resize, crop, batch the photos of --input
    Data,
    /// The video --input through ffmpeg and the network, then the same frames through the
    /// network alone
    Video,
    /// `atelier serve` in-process on a loopback port: images/s and p50/p99 latency of --size
    /// JPEGs with 1, 4 and 16 concurrent clients, against the bare network's images/s
    Serve,
    /// The arbitrary model's style predictor on the style picture --input (decode, centre
    /// square, resize to 256², network): paid once per style picture, not per frame
    Predict,
}

#[derive(clap::Args)]
pub struct Args {
    /// What to time
    #[arg(value_enum)]
    task: Task,
    /// Network: `multistyle26` (the built-in model), `arbitrary` (the built-in arbitrary-style
    /// model, see --style-image), a preset (`johnson`, `johnson-half`: seeded random weights)
    /// or a model file
    #[arg(long, default_value = "multistyle26")]
    net: String,
    /// The arbitrary model's style picture (its vector is predicted once, untimed); default: a
    /// seeded noise picture
    #[arg(long, value_name = "IMAGE")]
    style_image: Option<PathBuf>,
    /// Image size WIDTHxHEIGHT (infer; train uses --image-size)
    #[arg(long, default_value = "512x512", value_name = "WxH")]
    size: String,
    /// Images per batch (infer, train, data)
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The server's network workers (serve) [default: as `atelier serve`]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    workers: Option<usize>,
    #[command(flatten)]
    run: BenchRunArgs,
    /// Untimed runs first
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Wait for a line on stdin before each run (warm-up included), so a driver can interleave
    /// several programs; ends early at end of input
    #[arg(long)]
    serve: bool,
    /// Input file or folder (file: an image; data: a photo folder; video: a clip)
    #[arg(long)]
    input: Option<PathBuf>,
    /// Folder for outputs (file, video); default: the system's temporary folder
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Loss network (train): vgg16 or vgg19
    #[arg(long, default_value_t = VggKind::Vgg16)]
    loss_net: VggKind,
    /// Side of the square training crops (train, data)
    #[arg(long, default_value_t = 256)]
    image_size: i64,
    /// Per timed run: network calls (infer), optimizer steps (train) or batches (data)
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// Give the network NHWC input on CUDA too (the CPU path always does)
    #[arg(long)]
    channels_last: bool,
    /// Let cuDNN time its algorithms for each shape (CUDA)
    #[arg(long)]
    cudnn_benchmark: bool,
    /// infer in bf16/f16: also report the relative L2 distance of the output on this image to
    /// the f32 output
    #[arg(long, value_name = "IMAGE")]
    check_input: Option<PathBuf>,
}

/// What one timed run did, besides its duration.
struct RunResult {
    /// Images, frames or steps done, for rates.
    items: f64,
    extra: serde_json::Value,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.task != Task::Data {
        // As `atelier stylize`, `video` and `train` do.
        infer::tune_allocator();
    }
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    tch::set_num_threads(args.run.threads as i32);
    tch::set_num_interop_threads(1);
    let (device, precision) = (args.run.device.single()?, args.run.precision);
    precision.check_device(device)?;
    if args.cudnn_benchmark {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let (width, height) = parse_size(&args.size)?;
    if args.task == Task::Serve {
        return serve_task(&args, device, precision, (width, height));
    }
    let out_dir = args.out_dir.clone().unwrap_or_else(std::env::temp_dir);

    let error_vs_f32 = match (&args.check_input, args.task, precision) {
        (Some(image), Task::Infer, Precision::Bf16 | Precision::F16) => {
            Some(error_vs_f32(&args.net, device, precision, image)?)
        }
        _ => None,
    };
    let mut task: Box<dyn FnMut() -> anyhow::Result<RunResult>> = match args.task {
        Task::Predict => predict_task(&args, device, precision)?,
        Task::Infer => {
            let stylizer = stylizer_for(&args, device, precision)?;
            let mut input = Tensor::rand(
                [args.batch as i64, 3, height, width],
                (Kind::Float, Device::Cpu),
            ) * 255.0;
            input = input.to_device(device);
            if args.channels_last {
                input = models::precision::to_channels_last(&input);
            }
            let (batch, repeats) = (args.batch as f64, args.steps.max(1));
            Box::new(move || {
                for _ in 0..repeats {
                    drop(stylizer.stylize(&input)?);
                }
                sync(device);
                Ok(RunResult {
                    items: batch * repeats as f64,
                    extra: json!({}),
                })
            })
        }
        Task::File => {
            let stylizer = stylizer_for(&args, device, precision)?;
            let input = args.input.clone().context("file needs --input IMAGE")?;
            let job = Job {
                source: Source::File(input),
                target: Target::File(out_dir.join(format!("bench-{}.jpg", std::process::id()))),
                format: OutputFormat::Jpeg,
                relative: PathBuf::new(),
            };
            Box::new(move || {
                let image = infer::pipeline::read_image(
                    &job.source,
                    &Resize::default(),
                    models::pixels::DEFAULT_MAX_PIXELS,
                )?;
                let out = stylizer.stylize(&image.unsqueeze(0))?;
                infer::pipeline::write_image(&out.squeeze_dim(0), &job, 95)?;
                Ok(RunResult {
                    items: 1.0,
                    extra: json!({}),
                })
            })
        }
        Task::Train => train_task(&args, device, precision)?,
        Task::Data => {
            let root = args.input.clone().context("data needs --input FOLDER")?;
            let files = datasets::find_photos(&root)?.files;
            let config = datasets::StreamConfig {
                image_size: args.image_size,
                batch_size: args.batch,
                seed: 0,
                prefetch: 8,
                n_threads: args.run.threads,
                // Times decoding: a folder that fits the cache would be decoded once.
                cache_bytes: 0,
            };
            let n_batches = args.steps;
            Box::new(move || {
                // A fresh stream per run: its prefetching must not work between runs.
                let mut stream = datasets::PhotoStream::new(config, files.clone())?;
                for _ in 0..n_batches {
                    stream.next_batch()?;
                }
                Ok(RunResult {
                    items: (n_batches * config.batch_size) as f64,
                    extra: json!({}),
                })
            })
        }
        Task::Serve => unreachable!("serve is timed by serve_task"),
        Task::Video => {
            infer::video::check_ffmpeg()?;
            let stylizer = stylizer_for(&args, device, precision)?;
            let input = args.input.clone().context("video needs --input CLIP")?;
            let info = infer::video::probe(&input)?;
            let output = out_dir.join(format!("bench-{}.mp4", std::process::id()));
            // As `atelier video` runs by default.
            let options = infer::VideoOptions {
                max_batch: super::video::default_batch(device),
                ..Default::default()
            };
            let frame = Tensor::rand(
                [1, 3, info.height as i64, info.width as i64],
                (Kind::Float, Device::Cpu),
            ) * 255.0;
            Box::new(move || {
                let report =
                    infer::video::stylize_video(&stylizer, &input, &output, &options, &|_| {})?;
                // The same number of frames through the network alone, one at a time.
                let started = Instant::now();
                for _ in 0..report.frames {
                    drop(stylizer.stylize(&frame)?);
                }
                sync(device);
                let network_seconds = started.elapsed().as_secs_f64();
                Ok(RunResult {
                    items: report.frames as f64,
                    extra: json!({
                        "video_seconds": report.seconds,
                        "video_fps": report.frames as f64 / report.seconds,
                        "network_seconds": network_seconds,
                        "network_fps": report.frames as f64 / network_seconds,
                    }),
                })
            })
        }
    };

    if args.serve {
        // Set up: the driver starts the next program only now, so set-ups never overlap runs.
        out::line(json!({"ready": true}))?;
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut wait = || args.serve && !matches!(lines.next(), Some(Ok(_)));
    let mut times = Vec::new();
    let mut extras = Vec::new();
    for index in 0..args.warmup + args.runs {
        if wait() {
            break;
        }
        let started = Instant::now();
        let result = task().during_work()?;
        let seconds = started.elapsed().as_secs_f64();
        let warmup = index < args.warmup;
        out::line(
            json!({"warmup": warmup, "seconds": seconds, "items": result.items, "extra": result.extra}),
        )?;
        if !warmup {
            times.push(seconds / result.items.max(1e-12));
            extras.push(result.extra);
        }
    }
    let median = median(&times);
    out::line(json!({
        "summary": true,
        "task": format!("{:?}", args.task).to_lowercase(),
        "net": if args.task == Task::Predict { ARBITRARY } else { &args.net },
        "precision": precision.to_string(),
        "device": args.run.device.to_string(),
        "threads": args.run.threads,
        "median_seconds_per_item": median,
        "seconds_per_item": times,
        "extra": extras,
        "peak_rss_mib": peak_rss_mib(),
        "error_vs_f32": error_vs_f32,
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// Concurrent clients of `bench serve`, each sending its next request when the last is
/// answered.
const SERVE_CLIENTS: [usize; 3] = [1, 4, 16];
/// Requests per concurrency level (spread over its clients).
const SERVE_REQUESTS: usize = 48;

/// The bare network (batches of 1 and of the server's batch, the faster counts), then the
/// server at each concurrency level, as JSON lines and a summary.
fn serve_task(
    args: &Args,
    device: Device,
    precision: Precision,
    (width, height): (i64, i64),
) -> anyhow::Result<ExitCode> {
    let workers = args
        .workers
        .unwrap_or_else(|| ::serve::Config::default_workers(device, args.run.threads));
    let server_batch = ::serve::Config::default_max_batch(device, args.run.threads, workers);
    let stylizer = stylizer(infer::builtin::NAME, device, precision)?;
    let mut bare = 0f64;
    // Batches of 4 as well whatever the server's batch is: the bare network's best.
    for batch in [1, 4] {
        let input =
            Tensor::rand([batch as i64, 3, height, width], (Kind::Float, Device::Cpu)) * 255.0;
        // oneDNN builds its kernels for each new shape on the first calls.
        for _ in 0..args.warmup.max(2) {
            drop(stylizer.stylize(&input)?);
        }
        let calls = (8 / batch).max(1) * args.runs.max(1);
        let started = Instant::now();
        for _ in 0..calls {
            drop(stylizer.stylize(&input)?);
        }
        sync(device);
        let rate = (calls * batch) as f64 / started.elapsed().as_secs_f64();
        out::line(json!({"bare": true, "batch": batch, "images_per_second": rate}))?;
        bare = bare.max(rate);
    }
    drop(stylizer);

    let photo = match &args.input {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => include_bytes!("../../assets/photos/astronaut.png").to_vec(),
    };
    // The longer side capped at --size's, as the server's max_size does (the bundled photo
    // is 512x512).
    let resize = Resize {
        scale: None,
        max_size: Some(width.max(height) as u32),
    };
    let photo = resize.apply(models::pixels::decode(&photo)?).to_rgb8();
    let (width, height) = (photo.width(), photo.height());
    let body =
        infer::image_io::encode(&photo, OutputFormat::Jpeg, 90).map_err(anyhow::Error::msg)?;
    let config = ::serve::Config {
        bind: "127.0.0.1:0".into(),
        device,
        precision,
        threads: args.run.threads,
        workers,
        max_batch: server_batch,
        ..Default::default()
    };
    let server = ::serve::Server::bind(config)?.spawn()?;
    let url = format!(
        "http://{}/v1/stylize?style=19&format=jpeg&max_size={}",
        server.addr(),
        width.max(height)
    );
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(300))
        .build();
    let send = |agent: &ureq::Agent| -> anyhow::Result<f64> {
        let started = Instant::now();
        let response = agent
            .post(&url)
            .set("Content-Type", "image/jpeg")
            .send_bytes(&body)
            .context("a request to the server failed")?;
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut answer)?;
        Ok(started.elapsed().as_secs_f64())
    };
    for _ in 0..args.warmup.max(1) {
        send(&agent)?;
    }
    let mut levels = Vec::new();
    for clients in SERVE_CLIENTS {
        let per_client = SERVE_REQUESTS.div_ceil(clients);
        let started = Instant::now();
        let latencies: Vec<f64> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..clients)
                .map(|_| {
                    let agent = agent.clone();
                    let send = &send;
                    scope.spawn(move || (0..per_client).map(|_| send(&agent)).collect::<Vec<_>>())
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect::<anyhow::Result<Vec<f64>>>()
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let rate = latencies.len() as f64 / seconds;
        let level = json!({
            "clients": clients,
            "requests": latencies.len(),
            "images_per_second": rate,
            "vs_bare": rate / bare,
            "p50_ms": percentile(&latencies, 0.50) * 1e3,
            "p99_ms": percentile(&latencies, 0.99) * 1e3,
        });
        out::line(&level)?;
        levels.push(level);
    }
    server.stop()?;
    out::line(json!({
        "summary": true,
        "task": "serve",
        "size": format!("{width}x{height}"),
        "precision": precision.to_string(),
        "device": args.run.device.to_string(),
        "threads": args.run.threads,
        "workers": workers,
        "server_batch": server_batch,
        "bare_images_per_second": bare,
        "levels": levels,
        "peak_rss_mib": peak_rss_mib(),
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// The nearest-rank percentile `q` (0..1) of `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn train_task(
    args: &Args,
    device: Device,
    precision: Precision,
) -> anyhow::Result<Box<dyn FnMut() -> anyhow::Result<RunResult>>> {
    // Timing does not depend on the loss network's weights: random ones need no download.
    let vgg = Vgg::random(args.loss_net, device);
    let size = args.image_size;
    // `atelier train`'s recipe for this loss network, on random images, never checkpointing
    // or logging.
    let files = trainer::RunFiles {
        style_images: vec![PathBuf::from("random")],
        data_dir: PathBuf::from("random"),
        output: PathBuf::from("unused.safetensors"),
    };
    let mut config = trainer::recipe(args.loss_net, files, 0);
    config.arch = args.net.clone();
    config.batch_size = args.batch;
    config.image_size = size;
    config.seed = 0;
    config.precision = precision.to_string();
    config.n_steps = u64::MAX;
    config.checkpoint_every = u64::MAX;
    config.log_every = u64::MAX;
    config.sample_every = u64::MAX;
    let style = Tensor::rand([3, size, size], (Kind::Float, Device::Cpu)) * 255.0;
    let mut trainer = trainer::Trainer::new(config, &[style], vgg, device, precision)?;
    let batches: Vec<Tensor> = (0..4)
        .map(|_| {
            Tensor::rand(
                [args.batch as i64, 3, size, size],
                (Kind::Float, Device::Cpu),
            ) * 255.0
        })
        .collect();
    let steps = args.steps.max(1);
    let mut next = 0;
    Ok(Box::new(move || {
        for _ in 0..steps {
            trainer.step(&batches[next % batches.len()])?;
            next += 1;
        }
        sync(device);
        Ok(RunResult {
            items: steps as f64,
            extra: json!({}),
        })
    }))
}

/// A preset with seeded random weights, the built-in model or a model file.
fn stylizer(net: &str, device: Device, precision: Precision) -> anyhow::Result<Stylizer> {
    let loaded = match NetSpec::preset(net) {
        // `multistyle26` is also a preset's name: it means the built-in model's trained weights.
        Ok(spec) if net != infer::builtin::NAME => {
            tch::manual_seed(0);
            let meta = ModelMeta {
                spec,
                styles: vec!["random".into()],
                training: None,
            };
            infer::LoadedModel {
                model: Model::new(meta, device)?,
                default_style: 0,
                name: net.to_string(),
            }
        }
        _ => {
            let path = (net != infer::builtin::NAME).then(|| Path::new(net));
            infer::load_model(path, device).with_context(|| format!("cannot load {net}"))?
        }
    };
    let mix = StyleMix::parse(None, &loaded.model.meta.styles, loaded.default_style)?;
    Ok(Stylizer::new(
        loaded.model,
        device,
        precision,
        mix,
        Finish::default(),
    )?)
}

/// Relative L2 distance between the outputs in `precision` and in f32 on one image.
fn error_vs_f32(
    net: &str,
    device: Device,
    precision: Precision,
    image: &Path,
) -> anyhow::Result<f64> {
    let source = Source::File(image.to_path_buf());
    let input = infer::pipeline::read_image(
        &source,
        &Resize::default(),
        models::pixels::DEFAULT_MAX_PIXELS,
    )?
    .unsqueeze(0);
    let reference = stylizer(net, device, Precision::F32)?.stylize(&input)?;
    let low = stylizer(net, device, precision)?.stylize(&input)?;
    let distance = (&low - &reference).norm().double_value(&[]);
    Ok(distance / reference.norm().double_value(&[]))
}

fn parse_size(size: &str) -> anyhow::Result<(i64, i64)> {
    let parsed = size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<i64>().ok()?, h.parse::<i64>().ok()?)));
    match parsed {
        Some((w, h)) if w >= 16 && h >= 16 => Ok((w, h)),
        _ => anyhow::bail!("--size must be WIDTHxHEIGHT, both at least 16, not `{size}`"),
    }
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The process's peak resident set (VmHWM), from /proc; `None` where there is no /proc.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `--net` for the arbitrary-style model (Ghiasi et al. 2017: the style predictor and the
/// transformer whose norms come from its style vector).
const ARBITRARY: &str = infer::builtin::ARBITRARY_NAME;

/// The `Stylizer` for `--net`: the arbitrary-style model with the vector of `--style-image`
/// (predicted once, before timing), as `stylize --style-image` builds it, or `stylizer`.
fn stylizer_for(args: &Args, device: Device, precision: Precision) -> anyhow::Result<Stylizer> {
    if args.net != ARBITRARY {
        return stylizer(&args.net, device, precision);
    }
    let networks = infer::style_source::ArbitraryNetworks::load(device)?;
    let vector = style_vector(&networks.predictor, args.style_image.as_deref())?;
    Ok(Stylizer::with_style_vector(
        networks.transformer,
        networks.predictor,
        device,
        precision,
        &vector,
        "bench",
        Finish::default(),
    )?)
}

/// The predictor's style vector of the picture at `path` (decoded), or of a seeded noise
/// picture.
fn style_vector(predictor: &StylePredictor, path: Option<&Path>) -> anyhow::Result<Tensor> {
    match path {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let picture = models::pixels::decode(&bytes)
                .with_context(|| format!("cannot decode {}", path.display()))?;
            Ok(predictor.style_vector(&picture)?)
        }
        None => {
            tch::manual_seed(0);
            let side = predictor.spec().input_size;
            let noise = Tensor::rand([1, 3, side, side], (Kind::Float, Device::Cpu)) * 255.0;
            let vector = tch::no_grad(|| predictor.net.forward(&noise))?;
            Ok(vector.get(0))
        }
    }
}

/// `predict`: the style predictor on the picture --input, decoding included.
fn predict_task(
    args: &Args,
    device: Device,
    precision: Precision,
) -> anyhow::Result<Box<dyn FnMut() -> anyhow::Result<RunResult>>> {
    anyhow::ensure!(
        precision == Precision::F32,
        "predict runs in f32 (the vector conditions every norm)"
    );
    let input = args.input.clone().context("predict needs --input IMAGE")?;
    let predictor = infer::builtin::style_predictor(device)?;
    Ok(Box::new(move || {
        let vector = style_vector(&predictor, Some(&input))?;
        // Read the values, so a lazy device runs the network before the clock stops.
        let norm = vector.norm().double_value(&[]);
        Ok(RunResult {
            items: 1.0,
            extra: json!({"vector_norm": norm}),
        })
    }))
}
