//! `atelier convert`: other projects' trained networks into Atelier model files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The network to convert: a pytorch/examples `fast_neural_style` state dict (.pth,
    /// .model) or a Magenta-family multi-style ONNX file (.onnx)
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
    let extension = args
        .input
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let model = match extension.as_str() {
        "onnx" => models::convert::onnx::import_magenta_onnx(&args.input),
        "pth" | "model" | "pt" => models::convert::pth::import_pytorch_examples(&args.input),
        _ => bail!(
            "{}: unknown input format (expected .pth, .model or .onnx)",
            args.input.display()
        ),
    }?;
    model
        .save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let meta = &model.meta;
    eprintln!(
        "wrote {} ({} style{}, {} variables)",
        args.output.display(),
        meta.spec.n_styles,
        if meta.spec.n_styles == 1 { "" } else { "s" },
        meta.spec.variables().len()
    );
    Ok(ExitCode::SUCCESS)
}
