//! `atelier style-vector`: a style picture's vector saved for reuse, so the predictor runs once
//! per painting; every `--style-image` flag takes the file in place of the picture.

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::DeviceArg;

#[derive(clap::Args)]
pub struct Args {
    /// The style picture, or a mix of several by their vectors: `a.jpg:0.7,b.jpg:0.3`
    #[arg(value_name = "PICTURE")]
    picture: String,
    /// Where to write the style vector (a small `.safetensors` file; any name, e.g. `.style`)
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Where the predictor runs: auto (CUDA if present), cpu, cuda or cuda:N
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    device: DeviceArg,
    /// Overwrite the output if it exists
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    models::file::check_new_output(&args.output, args.force)?;
    let device = args.device.single()?;
    let pictures = infer::style_source::parse_pictures(&args.picture)?;
    let saved = infer::style_source::save_style_vector(&pictures, &args.output, device)?;
    eprintln!(
        "wrote {} (a {}-value style vector of {}); use it as --style-image {}",
        args.output.display(),
        saved.dim(),
        saved.source,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
