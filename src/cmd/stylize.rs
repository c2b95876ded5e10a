//! `atelier stylize`: photos, folders (mirrored under `-o`) and stdin/stdout through a style
//! network, as a decode → network → encode pipeline.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use anyhow::Context;
use infer::{
    Finish, Naming, OutputFormat, PipelineOptions, Resize, StyleSource, Stylizer, TileMode,
};

use super::common::{
    check_precision, progress_bar, stop_on_signals, MaxPixelsArg, RunArgs, IMAGES,
};
use super::exit::{self, DuringWork};
use super::out;

/// The network options `stylize` and `video` share.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Model file (`.safetensors` from `atelier train` or `atelier convert`); without it, the
    /// built-in 26-style network
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Style of a multi-style model: an index or name (`7`, `candy`), or a mix of several,
    /// `I:W,J:W` (weights are normalised to sum to 1)
    #[arg(long, value_name = "STYLE")]
    pub style: Option<String>,
    /// Any picture as the style, no training: a painting, a photo, or a style vector saved by
    /// `atelier style-vector`; several mix by their vectors, `a.jpg:0.7,b.jpg:0.3`. Runs the
    /// built-in arbitrary-style network at the photo's own size; not with -m or --style
    #[arg(long, value_name = "PICTURE")]
    pub style_image: Option<String>,
    /// How much style: 1 is the network's output, 0 the original, in between a blend (with
    /// --style-image: the style vector moves towards the photo's own, Magenta's interpolation)
    #[arg(long, default_value_t = 1.0, value_name = "0..1")]
    pub strength: f64,
    /// Keep the original's colours: take only the luminance from the stylized image
    #[arg(long)]
    pub preserve_color: bool,
    /// Resize so the longer side is at most N pixels (aspect ratio kept)
    #[arg(long, value_name = "N")]
    pub max_size: Option<u32>,
    /// Resize by this factor before stylizing (applied before --max-size)
    #[arg(long, value_name = "F")]
    pub scale: Option<f64>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub max_pixels: MaxPixelsArg,
    /// Most images (or frames) of the same size run through the network at once. Default: 4;
    /// video on the CPU: 1, where large batches only add memory traffic
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
}

/// Images of one size per network call when `--batch` is not given.
pub const DEFAULT_BATCH: usize = 4;

impl NetArgs {
    pub fn resize(&self) -> anyhow::Result<Resize> {
        if let Some(scale) = self.scale {
            anyhow::ensure!(
                scale > 0.0 && scale.is_finite(),
                "--scale must be a positive number"
            );
        }
        anyhow::ensure!(self.max_size != Some(0), "--max-size must be at least 1");
        Ok(Resize {
            scale: self.scale,
            max_size: self.max_size,
        })
    }

    /// Sets thread counts, then loads the model and resolves the style, once per worker of
    /// `--device` (several for `cpu:N` and `cuda:all`): everything that can fail on bad
    /// arguments, before any long work.
    pub fn stylizers(&self) -> anyhow::Result<Vec<Stylizer>> {
        let devices = self.run.device.workers();
        tch::set_num_threads(self.run.threads_or_all_cores() as i32);
        let precision = self.run.precision;
        for &device in devices {
            check_precision(precision, device)?;
        }
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.strength),
            "--strength must be between 0 and 1"
        );
        anyhow::ensure!(self.batch != Some(0), "--batch must be at least 1");
        let finish = Finish {
            strength: self.strength,
            preserve_color: self.preserve_color,
        };
        let source = self.style_source()?;
        let mut stylizers = Vec::new();
        for &device in devices {
            let stylizer = source.stylizer(device, precision, finish);
            stylizers.push(match source {
                StyleSource::Model { .. } => stylizer.context("cannot load the model")?,
                StyleSource::Pictures(_) => stylizer?,
            });
        }
        Ok(stylizers)
    }

    /// The style chosen by -m, --style and --style-image.
    pub fn style_source(&self) -> anyhow::Result<StyleSource> {
        Ok(StyleSource::from_args(
            self.model.as_deref(),
            self.style.as_deref(),
            self.style_image.as_deref(),
        )?)
    }
}

/// Stylize images: files, folders (recursively) and `-` for stdin
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images, folders (searched recursively) or `-` (stdin)
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output: a file (one input), a folder (folders are mirrored under it, names kept) or `-`
    /// (stdout). Without it, each output goes beside its input as `<stem>_<style>.<ext>` (the
    /// style's name, or the style picture's file stem)
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
    /// Output format (png, jpg, webp, bmp, tiff); by default from the output's or the input's
    /// extension, png for stdout
    #[arg(long, value_name = "FORMAT")]
    format: Option<OutputFormat>,
    /// JPEG quality, 1-100
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Tile images that would not fit in memory (auto), never (off), or tiles of at most N×N
    /// pixels. Tiles share whole-image statistics, so they blend without seams
    #[arg(long, default_value = "auto", value_name = "auto|off|N")]
    tile: TileMode,
    /// Print one JSON record per input: `status` done (with output, size, seconds, device,
    /// precision), skipped (--skip-existing) or failed (with the error)
    #[arg(long)]
    json: bool,
    /// Run only this task's part of the inputs: `I/N` is task I of N (from 0); `auto` reads
    /// the index from a job array (Slurm `SLURM_ARRAY_TASK_ID` and its range, Kubernetes
    /// `JOB_COMPLETION_INDEX`, AWS Batch `AWS_BATCH_JOB_ARRAY_INDEX`), `auto/N` also states the
    /// count (or set ATELIER_SHARD_COUNT). A file's task depends only on its path under the
    /// folder, so N tasks cover the folder exactly once and adding files moves no other file
    #[arg(long, value_name = "I/N|auto[/N]")]
    shard: Option<infer::ShardSpec>,
    /// Leave outputs that exist alone (outputs are written atomically, so an existing one is
    /// complete): a rerun of a stopped or preempted task does only what is left
    #[arg(long)]
    skip_existing: bool,
    /// Print only errors
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    infer::tune_allocator();
    let resize = args.net.resize()?;
    let mut stylizers = args.net.stylizers()?;
    let label = stylizers[0].label().to_string();
    let naming = Naming {
        output: args.output.clone(),
        format: args.format,
        label,
    };
    let shard = args.shard.map(|spec| spec.resolve()).transpose()?;
    let jobs = infer::jobs::plan(&args.inputs, &naming)?;
    anyhow::ensure!(
        !jobs.is_empty(),
        "no images found in {}",
        display_inputs(&args.inputs)
    );
    let to_stdout = jobs.iter().any(|job| job.target == infer::Target::Stdout);
    anyhow::ensure!(
        !(to_stdout && args.json),
        "--json cannot share stdout with an image written there"
    );
    anyhow::ensure!(
        !(shard.is_some() && jobs.iter().any(|job| job.source == infer::Source::Stdin)),
        "--shard splits files and folders, not stdin"
    );
    let jobs: Vec<infer::Job> = match shard {
        Some(shard) => jobs
            .into_iter()
            .filter(|job| shard.contains(&job.relative))
            .collect(),
        None => jobs,
    };
    let (jobs, existing) = if args.skip_existing {
        infer::jobs::split_existing(jobs)
    } else {
        (jobs, Vec::new())
    };
    report_skipped(&existing, args.json, args.quiet)?;
    let options = PipelineOptions {
        resize,
        tile: args.tile,
        quality: args.quality,
        max_batch: args.net.batch.unwrap_or(DEFAULT_BATCH),
        threads: args.net.run.threads_or_all_cores(),
        memory_budget: None,
        max_pixels: args.net.max_pixels.get(),
        interrupt: Some(stop_on_signals()?),
        smooth: 0.0,
    };
    let summary = run_jobs(&mut stylizers, &jobs, &options, args.json, args.quiet)?;
    Ok(finish_or_interrupted(summary, jobs.len(), &options))
}

/// [`finish`], or after a signal, what was left undone and exit 128 + the signal.
pub fn finish_or_interrupted(
    summary: infer::Summary,
    total: usize,
    options: &PipelineOptions,
) -> ExitCode {
    let signal = options
        .interrupt
        .as_ref()
        .map_or(0, |signal| signal.load(Ordering::SeqCst));
    if signal == 0 {
        return finish(summary, total);
    }
    let not_started = total - summary.written - summary.failed;
    eprintln!(
        "atelier: interrupted: {} of {total} inputs written, {} failed, {not_started} not started",
        summary.written, summary.failed
    );
    ExitCode::from((128 + signal) as u8)
}

/// The outputs `--skip-existing` left alone: one JSON record each, or one line in all.
fn report_skipped(skipped: &[infer::Job], json: bool, quiet: bool) -> anyhow::Result<()> {
    if json {
        for job in skipped {
            print_json(serde_json::json!({
                "status": "skipped",
                "input": job.source.display(),
                "output": job.target.display(),
            }))?;
        }
    } else if !quiet && !skipped.is_empty() {
        eprintln!(
            "atelier: skipped {} inputs whose outputs exist",
            skipped.len()
        );
    }
    Ok(())
}

fn print_json(record: serde_json::Value) -> anyhow::Result<()> {
    out::line(record)
}

/// Runs the pipeline (one worker per stylizer) with a progress bar (several files on a
/// terminal) and per-output lines.
pub fn run_jobs(
    stylizers: &mut [Stylizer],
    jobs: &[infer::Job],
    options: &PipelineOptions,
    json: bool,
    quiet: bool,
) -> anyhow::Result<infer::Summary> {
    let show = jobs.len() > 1 && !json && !quiet && std::io::stderr().is_terminal();
    let bar = progress_bar(show, Some(jobs.len() as u64), IMAGES);
    // The first error writing a record; it stops the run as a signal would (`| head`).
    let stdout_error = Mutex::new(None);
    let raise_stop = || {
        if let Some(interrupt) = &options.interrupt {
            interrupt.store(out::SIGPIPE, Ordering::SeqCst);
        }
    };
    let stop_for = |e: anyhow::Error| {
        if let Ok(mut first_error) = stdout_error.lock() {
            first_error.get_or_insert(e);
        }
        raise_stop();
    };
    let print = |record: serde_json::Value| {
        let Ok(mut first_error) = stdout_error.lock() else {
            return;
        };
        if first_error.is_none() {
            if let Err(e) = print_json(record) {
                *first_error = Some(e);
                raise_stop();
            }
        }
    };
    let on_done = |outcome: infer::Outcome| {
        match outcome {
            Ok(record) if json => {
                let mut record = serde_json::to_value(&record).unwrap_or_default();
                record["status"] = "done".into();
                print(record);
            }
            Ok(record) if !quiet && record.output != "-" => bar.suspend(|| {
                eprintln!(
                    "{} -> {} ({}x{}, {:.2} s)",
                    record.input, record.output, record.size[0], record.size[1], record.seconds
                )
            }),
            Ok(_) => {}
            Err(failure) if is_closed_stdout(&failure.error) => stop_for(out::Closed.into()),
            Err(failure) => {
                let message = failure.error.to_string();
                let message = if message.contains(&failure.input) {
                    message
                } else {
                    format!("{}: {message}", failure.input)
                };
                bar.suspend(|| eprintln!("atelier: {message}"));
                if json {
                    print(serde_json::json!({
                        "status": "failed",
                        "input": failure.input,
                        "error": message,
                    }));
                }
            }
        }
        bar.inc(1);
    };
    let summary = infer::pipeline::run_workers(stylizers, jobs, options, &on_done).during_work()?;
    bar.finish_and_clear();
    match stdout_error.into_inner().ok().flatten() {
        Some(e) if out::is_closed(&e) => return Err(e), // a quiet exit 141, not a failure
        Some(e) => return Err(e).during_work(),
        None => {}
    }
    Ok(summary)
}

/// Whether a picture for `-o -` met a closed standard output.
fn is_closed_stdout(error: &infer::Error) -> bool {
    matches!(error, infer::Error::Write { path, source }
        if path.as_os_str() == "-" && source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Exit code 1 with a count when some inputs failed.
fn finish(summary: infer::Summary, total: usize) -> ExitCode {
    if summary.failed > 0 {
        eprintln!("atelier: {} of {total} inputs failed", summary.failed);
        ExitCode::from(exit::PARTIAL)
    } else {
        ExitCode::SUCCESS
    }
}

fn display_inputs(inputs: &[PathBuf]) -> String {
    inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
