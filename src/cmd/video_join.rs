//! `atelier video-join`: the parts `atelier video --segment` wrote, joined into one video
//! without re-encoding, with the original's sound.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::exit::DuringWork;
use super::out;

/// Join the parts of `atelier video --segment` into one video (no re-encoding)
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The parts, in any order (each knows where it starts); a missing or overlapping part is
    /// refused before anything is written
    #[arg(required = true, value_name = "PART")]
    parts: Vec<PathBuf>,
    /// The joined video (its extension picks the container; one that takes the parts' codec)
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// The original video, whose audio streams are copied into the joined one
    #[arg(long, value_name = "VIDEO")]
    audio_from: Option<PathBuf>,
    /// Replace OUT if it exists
    #[arg(long)]
    force: bool,
    /// Print one JSON record when done
    #[arg(long)]
    json: bool,
    /// Print only errors
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    infer::video::check_ffmpeg()?;
    models::file::check_new_output(&args.output, args.force)?;
    if let Some(audio) = &args.audio_from {
        anyhow::ensure!(audio.is_file(), "{}: no such file", audio.display());
    }
    for part in &args.parts {
        anyhow::ensure!(part.is_file(), "{}: no such file", part.display());
        anyhow::ensure!(
            part.canonicalize().ok() != args.output.canonicalize().ok(),
            "the output would overwrite the part {}",
            part.display()
        );
    }
    let plan = infer::video::plan_join(&args.parts)?;
    let report = infer::video::join(&plan, &args.output, args.audio_from.as_deref())
        .with_context(|| format!("cannot join into {}", args.output.display()))
        .during_work()?;
    if args.json {
        out::line(serde_json::to_string(&report)?)?;
    } else if !args.quiet {
        eprintln!(
            "{} parts -> {} ({} frames, {:.1} s)",
            report.parts, report.output, report.frames, report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
