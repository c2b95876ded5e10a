//! `atelier serve`: the styles over HTTP (an API and a page), until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::common::{at_least_one, check_precision, RunArgs};
use super::out;

/// Serve the styles over HTTP: a page at / and a JSON/image API under /v1
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (`host:port`; port 0 picks a free one). Loopback by default
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    bind: String,
    /// Also serve every model file (`*.safetensors`) in this folder
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` on /v1 and /metrics [env: ATELIER_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    run: RunArgs,
    /// Network workers sharing the queue, each with its own copy of the networks and
    /// --threads/N threads for its network calls [default: on the CPU one per thread, each
    /// with one thread, so network calls overlap decoding and encoding; on CUDA 1]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    workers: Option<usize>,
    /// Most stylize requests in flight at once; more are answered 503 with Retry-After
    #[arg(long, default_value_t = 32, value_name = "N")]
    queue: usize,
    /// Most same-size, same-style images in one network call [default: 1 for CPU workers of
    /// one thread each, where a batch is slower per image than single calls; else 4]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    batch: Option<usize>,
    /// How long a request waits for others to share its network call, in milliseconds
    #[arg(long, default_value_t = 5, value_name = "MS")]
    batch_window: u64,
    /// Longest a stylize request may take, in seconds; then 503
    #[arg(long, default_value_t = 60, value_name = "S")]
    timeout: u64,
    /// Largest request body, in MiB
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    max_body: usize,
    /// Most pixels an uploaded image may declare, in megapixels (checked before decoding)
    #[arg(long, default_value_t = 50.0, value_name = "MP")]
    max_pixels: f64,
    /// Largest longer side a request may ask for with max_size
    #[arg(long, default_value_t = 2048, value_name = "N")]
    max_size: u32,
    /// The longer side of results when a request gives no max_size
    #[arg(long, default_value_t = 1024, value_name = "N")]
    default_size: u32,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    infer::tune_allocator();
    let config = config(args)?;
    let loopback = config.bind.starts_with("127.") || config.bind.starts_with("localhost");
    if config.token.is_none() && !loopback {
        eprintln!(
            "atelier: warning: serving on {} without --token: anyone who can reach it can use it",
            config.bind
        );
    }
    let server = ::serve::Server::bind(config).context("cannot start the server")?;
    for warning in server.warnings() {
        eprintln!("atelier: warning: {warning}");
    }
    let catalogue = server.catalogue();
    eprintln!(
        "atelier: serving {} styles from {} network{}, and any painting as a style (the \
         arbitrary-style network)",
        catalogue.entries.len(),
        catalogue.models.len(),
        if catalogue.models.len() == 1 { "" } else { "s" }
    );
    // The one line on stdout, for scripts and tests that start the server on port 0.
    out::line(format_args!("listening on http://{}", server.addr()))?;
    server.run_until_signal()?;
    eprintln!("atelier: stopped");
    Ok(ExitCode::SUCCESS)
}

fn config(args: Args) -> anyhow::Result<::serve::Config> {
    let threads = args.run.threads_or_all_cores();
    let (device, precision) = (args.run.device()?, args.run.precision);
    check_precision(precision, device)?;
    anyhow::ensure!(args.queue >= 1, "--queue must be at least 1");
    anyhow::ensure!(args.max_body >= 1, "--max-body must be at least 1 MiB");
    anyhow::ensure!(
        args.max_pixels.is_finite() && args.max_pixels > 0.0,
        "--max-pixels must be a positive number"
    );
    anyhow::ensure!(args.max_size >= 16, "--max-size must be at least 16");
    anyhow::ensure!(
        (16..=args.max_size).contains(&args.default_size),
        "--default-size must be between 16 and --max-size"
    );
    anyhow::ensure!(args.timeout >= 1, "--timeout must be at least 1 second");
    if let Some(dir) = &args.models {
        anyhow::ensure!(dir.is_dir(), "--models {} is not a folder", dir.display());
    }
    let workers = args
        .workers
        .unwrap_or_else(|| ::serve::Config::default_workers(device, threads));
    let token = args
        .token
        .or_else(|| std::env::var("ATELIER_TOKEN").ok())
        .filter(|t| !t.trim().is_empty());
    Ok(::serve::Config {
        bind: args.bind,
        models_dir: args.models,
        token,
        device,
        precision,
        threads,
        workers,
        queue: args.queue,
        max_batch: args
            .batch
            .unwrap_or_else(|| ::serve::Config::default_max_batch(device, threads, workers)),
        batch_window: Duration::from_millis(args.batch_window),
        timeout: Duration::from_secs(args.timeout),
        limits: ::serve::Limits {
            max_body: args.max_body << 20,
            max_pixels: (args.max_pixels * 1e6) as u64,
            max_side: args.max_size,
            default_size: args.default_size,
            max_parts: ::serve::Limits::default().max_parts,
        },
    })
}
