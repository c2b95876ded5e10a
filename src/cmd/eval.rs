//! `atelier eval`: the perceptual losses of stylizations, measured with the fixed yardstick of
//! `models::eval` (VGG-19, content relu4_2, style relu1_1 … relu5_1), per photo and on average.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use infer::{Finish, StyleMix, Stylizer};
use models::eval::{Measurement, Yardstick, STYLE_TAPS};
use models::{Precision, VggKind};
use tch::{Device, Tensor};

use super::common::read_picture;
use super::optimize::{load_vgg, RuntimeArgs};
use super::out;

/// Measure how well stylized images hold their photo's content and the style picture's style
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "builtin", "arbitrary", "stylized"])))]
pub struct Args {
    /// Photos, or folders of photos (not searched recursively)
    #[arg(required = true, value_name = "PHOTOS")]
    photos: Vec<PathBuf>,
    /// The style picture the stylizations are measured against
    #[arg(long, value_name = "IMAGE")]
    style: PathBuf,
    /// Stylize the photos with this model file (`atelier train`, `atelier convert`)
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Style of --model: index, name or mix, as `stylize --style` [default: its first]
    #[arg(long, value_name = "STYLE", requires = "model")]
    model_style: Option<String>,
    /// Stylize the photos with the built-in network in this style (index, name or mix)
    #[arg(long, value_name = "STYLE")]
    builtin: Option<String>,
    /// Stylize the photos with the built-in arbitrary-style network, from the --style picture
    /// itself (as `stylize --style-image`)
    #[arg(long)]
    arbitrary: bool,
    /// A folder of images stylized already: for `photo.jpg` it takes `photo.*` or `photo_*.*`
    #[arg(long, value_name = "DIR")]
    stylized: Option<PathBuf>,
    /// Resize photos so their longer side is N before stylizing them (network sources)
    #[arg(long, value_name = "N")]
    size: Option<u32>,
    /// Loss-network weights: the VGG-19 of `make vgg` [default: weights/vgg19.safetensors]
    #[arg(long, value_name = "PATH")]
    loss_weights: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Print JSON (per image and the mean) instead of a table
    #[arg(long)]
    json: bool,
}

/// Where the stylized images come from.
enum Source {
    /// A feed-forward network run on each photo: a model file, the built-in styles, or the
    /// arbitrary-style network with the style picture itself.
    Network(Box<Stylizer>),
    /// Images stylized already, found by the photo's name.
    Folder(PathBuf),
}

impl Source {
    /// The stylized image `[3, H, W]` for `photo` (as decoded and sized) from `photo_path`.
    fn stylize(
        &self,
        photo_path: &Path,
        photo: &Tensor,
        max_pixels: u64,
    ) -> anyhow::Result<Tensor> {
        match self {
            Source::Network(stylizer) => {
                let out = stylizer.stylize(&photo.unsqueeze(0))?;
                // What a saved stylization would hold: 8-bit pixels.
                Ok(out
                    .squeeze_dim(0)
                    .round()
                    .clamp(0.0, 255.0)
                    .to_device(Device::Cpu))
            }
            Source::Folder(dir) => {
                let path = find_stylized(dir, photo_path)?;
                Ok(models::pixels::image_to_tensor(&read_picture(
                    &path, max_pixels,
                )?))
            }
        }
    }
}

/// One measured photo.
struct Row {
    name: String,
    measurement: Measurement,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let device = args.runtime.apply()?;
    if args.size.is_some_and(|n| n < 16) {
        bail!("--size must be at least 16");
    }
    let photos = photo_paths(&args.photos)?;
    let max_pixels = args.runtime.max_pixels.get();
    let style = read_picture(&args.style, max_pixels).context("style image")?;
    let source = match (&args.model, &args.builtin, &args.stylized) {
        _ if args.arbitrary => {
            let picture = args.style.display().to_string();
            let source = infer::StyleSource::from_args(None, None, Some(&picture))?;
            Source::Network(Box::new(source.stylizer(
                device,
                Precision::F32,
                Finish::default(),
            )?))
        }
        (_, _, Some(dir)) => {
            if !dir.is_dir() {
                bail!("{} is not a folder", dir.display());
            }
            Source::Folder(dir.clone())
        }
        (model, builtin, None) => {
            let loaded =
                infer::load_model(model.as_deref(), device).context("cannot load the model")?;
            let selection = if model.is_some() {
                args.model_style.as_deref()
            } else {
                builtin.as_deref()
            };
            let mix = StyleMix::parse(selection, &loaded.model.meta.styles, loaded.default_style)?;
            Source::Network(Box::new(Stylizer::new(
                loaded.model,
                device,
                Precision::F32,
                mix,
                Finish::default(),
            )?))
        }
    };
    let vgg = load_vgg(VggKind::Vgg19, args.loss_weights.as_deref(), device)?;
    let yardstick = Yardstick::new(vgg, device)?;

    let mut rows = Vec::new();
    for path in &photos {
        let mut photo = read_picture(path, max_pixels)?;
        if let (Source::Network(_), Some(size)) = (&source, args.size) {
            photo = models::eval::resize_longer_side(&photo, size);
        }
        let photo_tensor = models::pixels::image_to_tensor(&photo);
        let stylized = source.stylize(path, &photo_tensor, max_pixels)?;
        let (height, width) = (stylized.size()[1], stylized.size()[2]);
        // The photo is compared at the stylized image's size.
        let photo_tensor = if (photo.height() as i64, photo.width() as i64) == (height, width) {
            photo_tensor
        } else {
            models::pixels::image_to_tensor(&models::eval::photo_for(
                &photo,
                width as u32,
                height as u32,
            ))
        };
        let style_image = models::eval::style_for(&style, width as u32, height as u32);
        let target = yardstick.style_target(&models::pixels::image_to_tensor(&style_image))?;
        let measurement = yardstick
            .measure(&photo_tensor, &stylized, &target)
            .with_context(|| format!("cannot measure {}", path.display()))?;
        rows.push(Row {
            name: path.display().to_string(),
            measurement,
        });
    }
    let mean = mean(&rows);
    if args.json {
        let record = serde_json::json!({
            "metric": "vgg19 (make vgg); content relu4_2 x 5; style relu1_1..relu5_1 x 100 each; gram / (c*h*w); mean squared errors; tv x 1",
            "images": rows.iter().map(|r| row_json(&r.name, &r.measurement)).collect::<Vec<_>>(),
            "mean": row_json("mean", &mean),
        });
        out::line(&record)?;
    } else {
        print_table(&rows, &mean)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn row_json(name: &str, m: &Measurement) -> serde_json::Value {
    let layers: serde_json::Map<String, serde_json::Value> = STYLE_TAPS
        .iter()
        .zip(&m.style_layers)
        .map(|(tap, value)| (tap.to_string(), serde_json::json!(value)))
        .collect();
    serde_json::json!({
        "image": name,
        "total": m.total(),
        "content": m.content,
        "style": m.style(),
        "style_layers": layers,
        "tv": m.tv,
    })
}

fn mean(rows: &[Row]) -> Measurement {
    let n = rows.len().max(1) as f64;
    let sum =
        |f: &dyn Fn(&Measurement) -> f64| rows.iter().map(|r| f(&r.measurement)).sum::<f64>() / n;
    Measurement {
        content: sum(&|m| m.content),
        style_layers: (0..STYLE_TAPS.len())
            .map(|i| sum(&|m| m.style_layers[i]))
            .collect(),
        tv: sum(&|m| m.tv),
    }
}

fn print_table(rows: &[Row], mean: &Measurement) -> anyhow::Result<()> {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let mut header = format!(
        "{:<width$}  {:>10}  {:>10}  {:>10}",
        "image", "total", "content", "style"
    );
    for tap in STYLE_TAPS {
        header.push_str(&format!("  {:>10}", tap.to_string()));
    }
    header.push_str(&format!("  {:>10}", "tv"));
    out::line(&header)?;
    let line = |name: &str, m: &Measurement| {
        let mut text = format!(
            "{name:<width$}  {:>10.4e}  {:>10.4e}  {:>10.4e}",
            m.total(),
            m.content,
            m.style()
        );
        for value in &m.style_layers {
            text.push_str(&format!("  {value:>10.4e}"));
        }
        text.push_str(&format!("  {:>10.4e}", m.tv));
        out::line(&text)
    };
    for row in rows {
        line(&row.name, &row.measurement)?;
    }
    if rows.len() > 1 {
        line("mean", mean)?;
    }
    Ok(())
}

/// Files as given; folders' image files, sorted.
fn photo_paths(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut photos = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && models::pixels::has_image_extension(p))
                .collect();
            found.sort();
            photos.extend(found);
        } else if input.is_file() {
            photos.push(input.clone());
        } else {
            bail!("cannot read {}: no such file or folder", input.display());
        }
    }
    if photos.is_empty() {
        bail!("no photos found");
    }
    Ok(photos)
}

/// `dir/<stem>.*` or else `dir/<stem>_*.*` (the names `atelier stylize` gives).
fn find_stylized(dir: &Path, photo: &Path) -> anyhow::Result<PathBuf> {
    let stem = photo
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut exact = None;
    let mut prefixed = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if !models::pixels::has_image_extension(&path) {
            continue;
        }
        let candidate = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if candidate == stem {
            exact = Some(path);
        } else if candidate.starts_with(&format!("{stem}_")) {
            prefixed.push(path);
        }
    }
    prefixed.sort();
    exact
        .or_else(|| prefixed.into_iter().next())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no stylized image for {} in {}",
                photo.display(),
                dir.display()
            )
        })
}
