//! `atelier sheet`: every style of a model, or several style pictures, on one photo, as a
//! labelled contact sheet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::common::{check_precision, RunArgs};
use super::exit::DuringWork;

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
    #[command(flatten)]
    run: RunArgs,
    /// Overwrite the output if it exists
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    models::file::check_new_output(&args.output, args.force)?;
    let format = infer::OutputFormat::from_path(&args.output)?;
    if let Some(threads) = args.run.threads {
        tch::set_num_threads(threads as i32);
    }
    let (device, precision) = (args.run.device()?, args.run.precision);
    check_precision(precision, device)?;
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
        precision,
        &models::pixels::image_to_tensor(&photo),
    )?;
    let n_styles = stylized.len();
    let mut cells = vec![("original".to_string(), infer::sheet::original_cell(&photo))];
    cells.extend(stylized);
    let sheet = infer::sheet::layout(&cells, args.columns);
    let encoded = infer::image_io::encode(&sheet, format, 92)
        .map_err(|reason| infer::Error::Encode {
            path: args.output.clone(),
            reason,
        })
        .during_work()?;
    models::file::write_atomically(&args.output, &encoded).during_work()?;
    eprintln!(
        "wrote {} ({n_styles} styles of {} in {:.1} s)",
        args.output.display(),
        source.network_name(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
