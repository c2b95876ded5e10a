//! `atelier convert`: other projects' trained networks into Atelier model files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

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
    if args.output.exists() && !args.force {
        bail!(
            "{} exists (pass --force to overwrite)",
            args.output.display()
        );
    }
    let imported = models::convert::import(&args.input)?;
    imported
        .save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}: {}", args.output.display(), imported.describe());
    Ok(ExitCode::SUCCESS)
}
