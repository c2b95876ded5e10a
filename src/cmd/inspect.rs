//! `atelier inspect`: what a model file says about itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tch::Device;

use super::out;

#[derive(clap::Args)]
pub struct Args {
    /// The model file (.safetensors written by atelier train or atelier convert), or the style
    /// predictor of arbitrary styles
    model: PathBuf,
    /// Print the header as one JSON object
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    if models::file::header_format(&bytes).as_deref() == Some(models::predictor::PREDICTOR_FORMAT) {
        return predictor(&args, &bytes);
    }
    let meta = models::file::read_meta(&args.model)?;
    if args.json {
        let json = serde_json::json!({
            "format": models::file::FORMAT_NAME,
            "format_version": models::file::FORMAT_VERSION,
            "spec": meta.spec,
            "styles": meta.styles,
            "training": meta.training,
        });
        out::line(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let spec = &meta.spec;
    row("model", args.model.display())?;
    row(
        "format",
        format_args!(
            "{} v{}",
            models::file::FORMAT_NAME,
            models::file::FORMAT_VERSION
        ),
    )?;
    match spec.style_vector_dim() {
        Some(dim) => row(
            "styles",
            format_args!("any picture, through the style predictor (style vectors of {dim})"),
        )?,
        None => row(
            "styles",
            format_args!("{} ({})", meta.styles.len(), meta.styles.join(", ")),
        )?,
    }
    row(
        "network",
        format_args!(
            "down {:?}, {} residual blocks, up {:?}, {}x{} outer kernels",
            spec.down_channels,
            spec.res_blocks,
            spec.up_channels,
            spec.outer_kernel,
            spec.outer_kernel
        ),
    )?;
    row(
        "",
        format_args!(
            "{:?} upsampling, {:?} padding, conv bias {}, norm after last {}, output {:?}",
            spec.upsample, spec.padding, spec.conv_bias, spec.norm_after_last, spec.output
        ),
    )?;
    row(
        "cost",
        format_args!(
            "{:.1} GFLOP per megapixel",
            spec.flops_per_pixel() * 1e6 / 1e9
        ),
    )?;
    if let Some(training) = &meta.training {
        // Converted models carry only provenance: show the fields that say something.
        let fields = serde_json::to_value(training)?;
        let fields = fields
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, value)| {
                !matches!(value, serde_json::Value::Null)
                    && value.as_str() != Some("")
                    && value.as_f64() != Some(0.0)
                    && value.as_array().is_none_or(|a| !a.is_empty())
                    && value.as_object().is_none_or(|o| !o.is_empty())
            });
        for (key, value) in fields {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            row(key, text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `key  value` line, values aligned.
fn row(key: &str, value: impl std::fmt::Display) -> anyhow::Result<()> {
    out::line(format_args!("{key:<15} {value}"))
}

/// The style predictor of arbitrary styles (`atelier-style-predictor`).
fn predictor(args: &Args, bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let loaded = models::predictor::StylePredictor::from_bytes(bytes, &args.model, Device::Cpu)?;
    let spec = loaded.spec();
    if args.json {
        out::line(serde_json::json!({
            "format": models::predictor::PREDICTOR_FORMAT,
            "format_version": models::predictor::PREDICTOR_FORMAT_VERSION,
            "spec": spec,
            "source": loaded.source,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let blocks: usize = spec.stages.iter().map(|stage| stage.repeats).sum();
    row("model", args.model.display())?;
    row(
        "format",
        format_args!(
            "{} v{}",
            models::predictor::PREDICTOR_FORMAT,
            models::predictor::PREDICTOR_FORMAT_VERSION
        ),
    )?;
    row(
        "network",
        format_args!(
            "MobileNet-v2 style predictor: stem {}, {blocks} inverted residual blocks, head {}",
            spec.stem_channels, spec.head_channels
        ),
    )?;
    row(
        "input",
        format_args!(
            "a style picture at {0}x{0}; out: a style vector of {1}",
            spec.input_size, spec.style_dim
        ),
    )?;
    if !loaded.source.is_empty() {
        row("source", &loaded.source)?;
    }
    Ok(ExitCode::SUCCESS)
}
