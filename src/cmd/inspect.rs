//! `atelier inspect`: what a model file says about itself.

use std::path::PathBuf;
use std::process::ExitCode;

use super::out;

#[derive(clap::Args)]
pub struct Args {
    /// The model file (.safetensors written by atelier train or atelier convert)
    model: PathBuf,
    /// Print the header as one JSON object
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
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
    out::line(format_args!("model          {}", args.model.display()))?;
    out::line(format_args!(
        "format         {} v{}",
        models::file::FORMAT_NAME,
        models::file::FORMAT_VERSION
    ))?;
    out::line(format_args!(
        "styles         {} ({})",
        meta.styles.len(),
        meta.styles.join(", ")
    ))?;
    out::line(format_args!(
        "network        down {:?}, {} residual blocks, up {:?}, {}x{} outer kernels",
        spec.down_channels, spec.res_blocks, spec.up_channels, spec.outer_kernel, spec.outer_kernel
    ))?;
    out::line(format_args!(
        "               {:?} upsampling, {:?} padding, conv bias {}, norm after last {}, output {:?}",
        spec.upsample, spec.padding, spec.conv_bias, spec.norm_after_last, spec.output
    ))?;
    out::line(format_args!(
        "cost           {:.1} GFLOP per megapixel",
        spec.flops_per_pixel() * 1e6 / 1e9
    ))?;
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
            out::line(format_args!("{:<15}{text}", format!("{key}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
