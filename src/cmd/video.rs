//! `atelier video`: a video through a style network with `ffmpeg` decoding and encoding, or a
//! folder of frames into a folder of stylized frames.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use infer::{Naming, PipelineOptions, TileMode, VideoOptions};

use super::common::{progress_bar, stop_on_signals, FRAMES};
use super::exit::DuringWork;
use super::out;
use super::stylize::{finish_or_interrupted, run_jobs, NetArgs, DEFAULT_BATCH};

/// Stylize a video (frames, rate, size, rotation and audio kept) or a folder of frames
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Video file (anything ffmpeg reads), or a folder of frames
    #[arg(value_name = "INPUT")]
    input: PathBuf,
    /// Output video (its extension picks the container), or a folder for a folder of frames
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    net: NetArgs,
    /// Constant rate factor of the encoder (lower is better quality; 18 looks lossless)
    #[arg(long, default_value_t = 18)]
    crf: u8,
    /// Video encoder, as ffmpeg names it (libx264, libx265, libvpx-vp9, ffv1, ...)
    #[arg(long, default_value = "libx264")]
    codec: String,
    /// Encoder speed preset (`ffmpeg -preset`): ultrafast ... veryslow for libx264/libx265.
    /// Slower presets make smaller files at the same --crf; the encoder runs beside the
    /// network, so on the CPU it slows stylizing down and on a GPU it can be the bottleneck.
    /// Default: veryfast for libx264/libx265, the encoder's own otherwise
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Less flicker: blend each stylized frame with the previous output frame (0 = off, at 1
    /// half of each frame is the previous one)
    #[arg(long, default_value_t = 0.0, value_name = "0..1")]
    smooth: f64,
    /// Only segment I of N (from 0) of the video, cut at keyframes, into a part for
    /// `atelier video-join`; `auto` reads I (and N) from a job array, as `stylize --shard`
    /// does. With --smooth, the frames before the segment that the blend remembers are
    /// stylized too and dropped, so the seams match a one-process run
    #[arg(long, value_name = "I/N|auto[/N]")]
    segment: Option<infer::ShardSpec>,
    /// Do nothing if OUT exists (it is written atomically, so it is complete): a rerun of a
    /// preempted segment task
    #[arg(long)]
    skip_existing: bool,
    /// Print one JSON record when done
    #[arg(long)]
    json: bool,
    /// Print only errors
    #[arg(short, long)]
    quiet: bool,
}

/// Frames per network call without `--batch`: on the CPU one, as batches of large frames only
/// add memory traffic there.
pub fn default_batch(device: tch::Device) -> usize {
    if device.is_cuda() {
        DEFAULT_BATCH
    } else {
        1
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    infer::tune_allocator();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.smooth),
        "--smooth must be between 0 and 1"
    );
    let resize = args.net.resize()?;
    if args.input.is_dir() {
        anyhow::ensure!(
            args.segment.is_none(),
            "--segment cuts a video file; split a folder of frames with `atelier stylize --shard`"
        );
        return frames_folder(&args, resize);
    }
    anyhow::ensure!(
        args.input.is_file(),
        "{}: no such file",
        args.input.display()
    );
    anyhow::ensure!(
        args.input.canonicalize().ok() != args.output.canonicalize().ok(),
        "the output would overwrite the input"
    );
    if args.skip_existing && args.output.is_file() {
        if args.json {
            let record = serde_json::json!({"status": "skipped", "input": args.input, "output": args.output});
            out::line(&record)?;
        } else if !args.quiet {
            eprintln!("atelier: {} exists, skipped", args.output.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    infer::video::check_ffmpeg()?;
    let info = infer::video::probe(&args.input)?;
    // Frames too small for the network are a bad input: refused here, before the work, rather
    // than by `stylize_video` once it has started.
    let (width, height) = resize.target(info.width, info.height);
    let min = models::transformer::MIN_INPUT_SIDE as u32;
    anyhow::ensure!(
        width >= min && height >= min,
        "{}: frames of {width}x{height} are too small for the network (at least {min}x{min})",
        args.input.display()
    );
    let max_pixels = args.net.max_pixels.get();
    anyhow::ensure!(
        u64::from(width) * u64::from(height) <= max_pixels,
        "{}: frames of {width}x{height} are over the limit of {:.1} megapixels (--max-pixels; \
         --max-size makes them smaller)",
        args.input.display(),
        max_pixels as f64 / 1e6
    );
    let segment = match args.segment {
        Some(spec) => Some(infer::video::plan_segment(
            &args.input,
            spec.resolve()?,
            args.smooth,
        )?),
        None => None,
    };
    let workers = args.net.run.device.workers().len();
    anyhow::ensure!(
        segment.is_none() || workers == 1,
        "--segment runs on one device; the job array gives each task its own"
    );
    let mut stylizers = args.net.stylizers()?;
    let show = !args.json && !args.quiet && std::io::stderr().is_terminal();
    let frames = match &segment {
        Some(plan) => Some(plan.frames),
        None => info.estimated_frames(),
    };
    let bar = progress_bar(show, frames, FRAMES);
    let options = VideoOptions {
        resize,
        codec: args.codec.clone(),
        crf: args.crf,
        smooth: args.smooth,
        max_batch: args
            .net
            .batch
            .unwrap_or_else(|| default_batch(stylizers[0].device())),
        preset: args.preset.clone(),
        segment,
        interrupt: Some(stop_on_signals()?),
    };
    let on_frame = |n: u64| bar.set_position(n);
    let report = if workers > 1 {
        infer::video::stylize_video_on_workers(
            &mut stylizers,
            &args.input,
            &info,
            &args.output,
            &options,
            &on_frame,
        )
    } else {
        infer::video::stylize_probed_video(
            &stylizers[0],
            &args.input,
            &info,
            &args.output,
            &options,
            &on_frame,
        )
    }
    .with_context(|| format!("cannot stylize {}", args.input.display()));
    bar.finish_and_clear();
    if let Some(signal) = interrupted(&report, &options) {
        eprintln!(
            "atelier: interrupted: {} not written (the partial file was removed)",
            args.output.display()
        );
        return Ok(ExitCode::from((128 + signal) as u8));
    }
    let report = report.during_work()?;
    if args.json {
        out::line(serde_json::to_string(&report)?)?;
    } else if !args.quiet {
        let part = match (&report.segment, report.first_frame) {
            (Some(segment), Some(first)) => format!("segment {segment} from frame {first}, "),
            _ => String::new(),
        };
        eprintln!(
            "{} -> {} ({part}{} frames of {}x{} at {} fps, {:.1} s, {:.1} frames/s)",
            report.input,
            report.output,
            report.frames,
            report.size[0],
            report.size[1],
            report.frame_rate,
            report.seconds,
            report.frames as f64 / report.seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The signal that stopped a video run, if one did.
fn interrupted(
    report: &anyhow::Result<infer::VideoReport>,
    options: &VideoOptions,
) -> Option<usize> {
    let stopped = report
        .as_ref()
        .err()?
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(infer::Error::Interrupted)));
    let signal = options.interrupt.as_ref()?.load(Ordering::SeqCst);
    (stopped && signal != 0).then_some(signal)
}

/// A folder of frames: the `stylize` pipeline, mirrored under `-o` with names kept.
fn frames_folder(args: &Args, resize: infer::Resize) -> anyhow::Result<ExitCode> {
    let mut stylizers = args.net.stylizers()?;
    let label = stylizers[0].mix().label.clone();
    let naming = Naming {
        output: Some(args.output.clone()),
        format: None,
        label,
    };
    let jobs = infer::jobs::plan(std::slice::from_ref(&args.input), &naming)?;
    anyhow::ensure!(
        !jobs.is_empty(),
        "no frames found in {}",
        args.input.display()
    );
    let options = PipelineOptions {
        resize,
        tile: TileMode::Auto,
        quality: 95,
        max_batch: args.net.batch.unwrap_or(DEFAULT_BATCH),
        threads: args.net.run.threads_or_all_cores(),
        memory_budget: None,
        max_pixels: args.net.max_pixels.get(),
        interrupt: Some(stop_on_signals()?),
        smooth: args.smooth,
    };
    let summary = run_jobs(&mut stylizers, &jobs, &options, args.json, args.quiet)?;
    Ok(finish_or_interrupted(summary, jobs.len(), &options))
}
