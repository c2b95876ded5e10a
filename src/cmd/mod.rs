//! Subcommands, one module each. Every `run` returns the process exit code; errors bubble up
//! as `anyhow::Error` with context and become exit code 2 in `main`.

mod bench;
mod convert;
mod info;
mod inspect;
mod sheet;
mod style_vector;
mod styles;
mod stylize;
mod train;
mod video;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes shared by all subcommands.
pub mod exit {
    /// Some inputs failed (each was reported), the others finished.
    pub const PARTIAL: u8 = 1;
    /// Bad arguments or inputs, caught before any long work.
    pub const USAGE: u8 = 2;
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
    /// Convert a pytorch/examples (.pth) or Magenta ONNX network into an atelier model file
    Convert(convert::Args),
    /// Print what a model file says about itself: network, styles, how it was trained
    Inspect(inspect::Args),
    /// List the styles of a model (the built-in one by default)
    Styles(styles::Args),
    /// Render every style of a model (or several style pictures) on one photo as a labelled contact sheet
    Sheet(sheet::Args),
    /// Save a style picture's style vector for reuse with --style-image
    StyleVector(style_vector::Args),
    /// Train a style network from style images and a folder of photos (resumable, logs to TensorBoard)
    Train(Box<train::Args>),
    /// Time the network, a whole file, a training step, the photo stream or a video (JSON lines)
    Bench(bench::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Info(args) => info::run(args),
        Command::Stylize(args) => stylize::run(args),
        Command::Video(args) => video::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Styles(args) => styles::run(args),
        Command::Sheet(args) => sheet::run(args),
        Command::StyleVector(args) => style_vector::run(args),
        Command::Train(args) => train::run(*args),
        Command::Bench(args) => bench::run(args),
    }
}
