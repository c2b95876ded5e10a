//! Subcommands, one module each. Every `run` returns the process exit code; errors bubble up
//! as `anyhow::Error` with context, and `main` turns them into exit code 2, or 1 for an error
//! the command marked as happening during its work (see [`exit`]).

mod bench;
mod common;
mod convert;
mod eval;
mod info;
mod inspect;
mod optimize;
pub mod out;
mod serve;
mod sheet;
mod style_vector;
mod styles;
mod stylize;
mod train;
mod video;
mod video_join;

use clap::{ArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes shared by all subcommands, and the rule that picks one for an error.
///
/// A command first checks its arguments and inputs (files exist and decode, the model loads,
/// the output may be written), then does its work (stylizing, encoding, training, writing).
/// An error before the work is the caller's to fix: exit 2. The command marks the work with
/// [`DuringWork::during_work`]; an error from inside it exits 1. Signals that stop training
/// exit 128 + the signal (130, 143).
pub mod exit {
    use std::fmt;

    /// Some inputs failed (each was reported), the others finished.
    pub const PARTIAL: u8 = 1;
    /// The work failed part-way (an ffmpeg failure mid-video, a write failure mid-run).
    pub const FAILED: u8 = 1;
    /// Bad arguments or inputs, caught before any long work.
    pub const USAGE: u8 = 2;

    /// An error raised during a command's work rather than before it.
    #[derive(Debug)]
    struct WorkFailed(anyhow::Error);

    impl fmt::Display for WorkFailed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Display::fmt(&*self.0, f)
        }
    }

    // The marker is invisible in messages: it shows its error's text and passes on its causes.
    impl std::error::Error for WorkFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.source()
        }
    }

    /// Marks a result as coming from a command's work: its error exits 1, not 2.
    pub trait DuringWork<T> {
        fn during_work(self) -> anyhow::Result<T>;
    }

    impl<T, E: Into<anyhow::Error>> DuringWork<T> for Result<T, E> {
        fn during_work(self) -> anyhow::Result<T> {
            self.map_err(|error| anyhow::Error::new(WorkFailed(error.into())))
        }
    }

    /// The exit code for an error that ended a command.
    pub fn code(error: &anyhow::Error) -> u8 {
        if error.chain().any(|cause| cause.is::<WorkFailed>()) {
            FAILED
        } else {
            USAGE
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn errors_during_the_work_exit_1_and_read_the_same() {
            let before = anyhow::anyhow!("no such file").context("cannot read a.png");
            assert_eq!(code(&before), USAGE);

            let failed: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
            let during = failed
                .map_err(anyhow::Error::from)
                .map_err(|e| e.context("cannot write b.png"))
                .during_work()
                .map_err(|e| e.context("cannot stylize c.mp4"))
                .unwrap_err();
            assert_eq!(code(&during), FAILED);
            let messages: Vec<String> = during.chain().map(ToString::to_string).collect();
            assert_eq!(
                messages,
                ["cannot stylize c.mp4", "cannot write b.png", "disk full"]
            );
        }
    }
}

#[derive(Parser)]
#[command(
    name = "atelier",
    version,
    about = "Fast neural style transfer: train a style network, then stylize images, folders and video",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show versions, devices and CPU features this build sees
    Info(info::Args),
    /// Stylize images: files, folders (mirrored under -o) and stdin/stdout
    Stylize(stylize::Args),
    /// Stylize a video with ffmpeg, keeping its frames, rate, size, rotation and sound
    Video(video::Args),
    /// Join the parts of `video --segment` into one video without re-encoding, with the sound
    VideoJoin(video_join::Args),
    /// Convert a pytorch/examples (.pth) or Magenta ONNX network into an atelier model file
    Convert(convert::Args),
    /// Print what a model file says about itself: network, styles, how it was trained (also
    /// reads the style predictor)
    Inspect(inspect::Args),
    /// List the styles of a model (the built-in one by default)
    Styles(styles::Args),
    /// Render every style of a model (or several style pictures) on one photo as a labelled contact sheet
    Sheet(sheet::Args),
    /// Save a style picture's style vector for reuse with --style-image
    StyleVector(style_vector::Args),
    /// Train a style network from style images and a folder of photos (resumable, logs to TensorBoard)
    Train(Box<train::Args>),
    /// Style transfer by optimization (Gatys et al.): no network, the pixels are optimised
    Optimize(Box<optimize::Args>),
    /// The perceptual losses of stylizations (fixed VGG-19 yardstick), per photo and on average
    Eval(eval::Args),
    /// Serve the styles over HTTP: a page and a JSON/image API, with batching and limits
    Serve(serve::Args),
    /// Time the network, a whole file, a training step, the photo stream or a video (JSON lines)
    Bench(bench::Args),
}

/// Runs the parsed command. `matches` are the same arguments unparsed, for the commands that
/// need to know which flags were given rather than defaulted (`train --resume`).
pub fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Info(args) => info::run(args),
        Command::Stylize(args) => stylize::run(args),
        Command::Video(args) => video::run(args),
        Command::VideoJoin(args) => video_join::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Styles(args) => styles::run(args),
        Command::Sheet(args) => sheet::run(args),
        Command::StyleVector(args) => style_vector::run(args),
        Command::Train(args) => {
            let given = train::Given::from(matches.subcommand_matches("train"));
            train::run(*args, &given)
        }
        Command::Optimize(args) => optimize::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
