//! `atelier styles`: the styles a model offers.

use std::path::PathBuf;
use std::process::ExitCode;

use super::out;

#[derive(clap::Args)]
pub struct Args {
    /// The model (default: the built-in 26-style network)
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (meta, name, default_style) = match &args.model {
        Some(path) => (
            models::file::read_meta(path)?,
            path.display().to_string(),
            0,
        ),
        None => (
            infer::builtin::load(tch::Device::Cpu)?.meta,
            infer::builtin::NAME.to_string(),
            infer::builtin::DEFAULT_STYLE,
        ),
    };
    if args.json {
        let json =
            serde_json::json!({ "model": name, "styles": meta.styles, "default": default_style });
        out::line(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    out::line(format_args!(
        "{} style{} in {name}:",
        meta.styles.len(),
        if meta.styles.len() == 1 { "" } else { "s" }
    ))?;
    for (index, style) in meta.styles.iter().enumerate() {
        let default = if index == default_style {
            "  (default)"
        } else {
            ""
        };
        if *style == index.to_string() {
            out::line(format_args!("  {index:>3}{default}"))?;
        } else {
            out::line(format_args!("  {index:>3}  {style}{default}"))?;
        }
    }
    if meta.styles.len() > 1 {
        out::line("pick one with --style I, or mix with --style I:W,J:W (weights are normalised)")?;
    }
    if args.model.is_none() {
        out::line(format_args!(
            "any picture as a style, no training: --style-image painting.jpg runs the built-in \
             arbitrary-style network ({}, Ghiasi et al. 2017); mix pictures with \
             --style-image a.jpg:0.7,b.jpg:0.3, save a picture's vector with `atelier style-vector`",
            infer::builtin::ARBITRARY_NAME
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
