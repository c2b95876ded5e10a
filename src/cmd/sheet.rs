//! `atelier sheet`: every style of a model, or several style pictures, on one photo, as a
//! labelled contact sheet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use models::Precision;

#[derive(clap::Args)]
pub struct Args {
    /// The photo to stylize
    photo: PathBuf,
    /// Where to write the sheet (.png, .jpg or .webp)
    #[arg(short, long)]
    output: PathBuf,
    /// The model (default: the built-in 26-style network)
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Style pictures (or style vectors from `atelier style-vector`) instead of a model's
    /// styles, one cell each: `a.jpg,b.png,c.style`; run by the built-in arbitrary-style network
    #[arg(long, value_name = "PICTURES")]
    style_image: Option<String>,
    /// Longer side of each cell, in pixels
    #[arg(long, default_value_t = 256)]
    cell_size: u32,
    /// Number of columns (default: as square as possible)
    #[arg(long)]
    columns: Option<usize>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32, bf16 or f16 (f16 needs CUDA)
    #[arg(long, default_value = "f32")]
    precision: Precision,
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
    let format = infer::OutputFormat::from_path(&args.output)?;
    let device = models::precision::parse_device(&args.device).map_err(anyhow::Error::msg)?;
    args.precision
        .check_device(device)
        .map_err(anyhow::Error::msg)?;
    let source =
        infer::StyleSource::from_args(args.model.as_deref(), None, args.style_image.as_deref())?;
    let bytes = std::fs::read(&args.photo)
        .with_context(|| format!("cannot read {}", args.photo.display()))?;
    let photo =
        models::pixels::decode(&bytes).with_context(|| format!("{}", args.photo.display()))?;
    let resize = infer::Resize {
        scale: None,
        max_size: Some(args.cell_size),
    };
    let photo = resize.apply(photo);
    let started = Instant::now();
    let stylized = infer::sheet::style_cells(
        &source,
        device,
        args.precision,
        &models::pixels::image_to_tensor(&photo),
    )?;
    let n_styles = stylized.len();
    let mut cells = vec![("original".to_string(), infer::sheet::original_cell(&photo))];
    cells.extend(stylized);
    let sheet = infer::sheet::layout(&cells, args.columns);
    let encoded = infer::image_io::encode(&sheet, format, 92).map_err(anyhow::Error::msg)?;
    models::file::write_atomically(&args.output, &encoded)?;
    eprintln!(
        "wrote {} ({n_styles} styles of {} in {:.1} s)",
        args.output.display(),
        source.network_name(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
