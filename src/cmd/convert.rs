//! `atelier convert`: other projects' trained networks into Atelier model files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::exit::DuringWork;

#[derive(clap::Args)]
pub struct Args {
    /// The network to convert: a pytorch/examples `fast_neural_style` state dict (.pth,
    /// .model), Magenta's 26-style network or one of Magenta's arbitrary-style networks (the
    /// style predictor or the transformer) as ONNX (.onnx)
    input: PathBuf,
    /// Where to write the Atelier model (.safetensors)
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite the output if it exists
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    models::file::check_new_output(&args.output, args.force)?;
    // A file that does not convert is a bad input: it is read whole before anything is written.
    let imported = models::convert::import(&args.input)?;
    imported
        .save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))
        .during_work()?;
    eprintln!("wrote {}: {}", args.output.display(), imported.describe());
    Ok(ExitCode::SUCCESS)
}
