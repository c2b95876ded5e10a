//! Where a style comes from, chosen the same way on every command (`stylize`, `video`,
//! `sheet`, ...): a trained model file (`-m MODEL --style S`), the built-in 26-style network
//! (`--style 7`), or any picture (`--style-image painting.jpg`) through the built-in
//! arbitrary-style pair (Ghiasi et al. 2017): the style predictor turns each picture into a
//! 100-d style vector once, and the transformer's norms are computed from it.
//!
//! A style picture can also be a style-vector file (`atelier style-vector`,
//! `models::style_vector`), told apart by its content, so a painting's vector is computed once
//! and reused.

use std::path::{Path, PathBuf};

use models::style_vector::{is_style_vector, StyleVector};
use models::{Model, Precision, StylePredictor};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::stylizer::{file_safe, Finish, StyleMix, Stylizer};

/// One style picture (or style-vector file) and its weight in a mix.
#[derive(Debug, Clone, PartialEq)]
pub struct StylePicture {
    pub path: PathBuf,
    /// As given (1 without `:W`); mixes normalise the weights to sum to 1.
    pub weight: f64,
}

impl StylePicture {
    /// Names the picture in output file names and sheet labels: its file stem.
    pub fn label(&self) -> String {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        file_safe(&stem)
    }
}

/// Parses `--style-image`: `PICTURE` or `A:W,B:W` (a weight after the last `:`, 1 without
/// one). A `:` followed by something that is not a number belongs to the file name.
pub fn parse_pictures(list: &str) -> Result<Vec<StylePicture>> {
    let mut pictures = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(Error::Style(format!(
                "`{list}` has an empty style picture name"
            )));
        }
        let weighted = part
            .rsplit_once(':')
            .and_then(|(path, weight)| Some((path, weight.trim().parse::<f64>().ok()?)));
        let (path, weight) = match weighted {
            Some((path, weight)) if !path.is_empty() => (path.trim(), weight),
            _ => (part, 1.0),
        };
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::Style(format!(
                "weight {weight} of `{path}` must be >= 0"
            )));
        }
        pictures.push(StylePicture {
            path: PathBuf::from(path),
            weight,
        });
    }
    if pictures.iter().map(|p| p.weight).sum::<f64>() <= 0.0 {
        return Err(Error::Style(format!("the weights of `{list}` sum to 0")));
    }
    Ok(pictures)
}

/// The style of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum StyleSource {
    /// A trained model file, or the built-in 26-style network when `path` is `None`; `style`
    /// picks or mixes its styles (`StyleMix::parse`), the model's default without it.
    Model {
        path: Option<PathBuf>,
        style: Option<String>,
    },
    /// Style pictures or style-vector files, mixed by their vectors, through the built-in
    /// arbitrary-style network.
    Pictures(Vec<StylePicture>),
}

impl StyleSource {
    /// From the command-line flags `-m`, `--style` and `--style-image`; a style picture
    /// replaces the model, so it cannot be combined with either.
    pub fn from_args(
        model: Option<&Path>,
        style: Option<&str>,
        style_image: Option<&str>,
    ) -> Result<Self> {
        let Some(list) = style_image else {
            return Ok(Self::Model {
                path: model.map(Path::to_path_buf),
                style: style.map(str::to_string),
            });
        };
        if model.is_some() {
            return Err(Error::Invalid(
                "--style-image runs the built-in arbitrary-style network; it cannot be combined with -m/--model"
                    .into(),
            ));
        }
        if style.is_some() {
            return Err(Error::Invalid(
                "--style-image and --style both choose the style; give one of them".into(),
            ));
        }
        Ok(Self::Pictures(parse_pictures(list)?))
    }

    /// How messages name the network that runs: the model's path or a built-in network's name.
    pub fn network_name(&self) -> String {
        match self {
            Self::Model {
                path: Some(path), ..
            } => path.display().to_string(),
            Self::Model { path: None, .. } => crate::builtin::NAME.to_string(),
            Self::Pictures(_) => crate::builtin::ARBITRARY_NAME.to_string(),
        }
    }

    /// Loads what the source needs onto `device` and resolves the style: a trained model and
    /// its mix, or the arbitrary pair and the pictures' mixed vector (the predictor runs once
    /// per picture here). Every bad file or selection fails here, before any output.
    pub fn stylizer(
        &self,
        device: Device,
        precision: Precision,
        finish: Finish,
    ) -> Result<Stylizer> {
        match self {
            Self::Model { path, style } => {
                let loaded = crate::load_model(path.as_deref(), device)?;
                let mix = StyleMix::parse(
                    style.as_deref(),
                    &loaded.model.meta.styles,
                    loaded.default_style,
                )?;
                Stylizer::new(loaded.model, device, precision, mix, finish)
            }
            Self::Pictures(pictures) => {
                let networks = ArbitraryNetworks::load(device)?;
                let vector = networks.mixed_vector(pictures)?;
                Stylizer::with_style_vector(
                    networks.transformer,
                    networks.predictor,
                    device,
                    precision,
                    &vector,
                    &pictures_label(pictures),
                    finish,
                )
            }
        }
    }
}

/// Names a mix of pictures in output file names: their stems joined by `-`.
pub fn pictures_label(pictures: &[StylePicture]) -> String {
    pictures
        .iter()
        .map(StylePicture::label)
        .collect::<Vec<_>>()
        .join("-")
}

/// The built-in arbitrary-style pair: the transformer and the style predictor.
pub struct ArbitraryNetworks {
    pub transformer: Model,
    pub predictor: StylePredictor,
}

impl ArbitraryNetworks {
    /// Loads both embedded networks onto `device`.
    pub fn load(device: Device) -> Result<Self> {
        let transformer = crate::builtin::arbitrary_transformer(device)?;
        let predictor = crate::builtin::style_predictor(device)?;
        Ok(Self {
            transformer,
            predictor,
        })
    }

    /// The length of the style vector the transformer takes.
    pub fn vector_dim(&self) -> Result<usize> {
        self.transformer
            .meta
            .spec
            .style_vector_dim()
            .ok_or_else(|| Error::Invalid("the arbitrary network takes no style vector".into()))
    }

    /// The style vector (`[D]` f32 on the CPU) of a style picture (through the predictor) or
    /// of a style-vector file (checked: format and length).
    pub fn style_vector(&self, path: &Path) -> Result<Tensor> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if is_style_vector(&bytes) {
            let vector = StyleVector::from_bytes(&bytes, path, self.vector_dim()?)?;
            return Ok(vector.vector);
        }
        let picture = models::pixels::decode(&bytes).map_err(|e| {
            let reason = match e {
                models::Error::Decode(reason) => reason,
                other => other.to_string(),
            };
            Error::Invalid(format!(
                "{} is neither an image nor an atelier style vector ({reason})",
                path.display()
            ))
        })?;
        let vector = self.predictor.style_vector(&picture)?;
        Ok(vector.to_device(Device::Cpu).to_kind(Kind::Float))
    }

    /// The weighted mean of the pictures' vectors (weights normalised to sum to 1).
    pub fn mixed_vector(&self, pictures: &[StylePicture]) -> Result<Tensor> {
        let total: f64 = pictures.iter().map(|p| p.weight).sum();
        if pictures.is_empty() || total <= 0.0 {
            return Err(Error::Style(
                "no style picture with a positive weight".into(),
            ));
        }
        let mut mixed: Option<Tensor> = None;
        for picture in pictures {
            let vector = self.style_vector(&picture.path)? * (picture.weight / total);
            mixed = Some(match mixed {
                Some(sum) => sum + vector,
                None => vector,
            });
        }
        mixed.ok_or_else(|| Error::Style("no style picture given".into()))
    }
}

/// `atelier style-vector`: the (mixed) vector of `pictures`, saved to `output` atomically, its
/// `source` naming the pictures. Returns what was saved.
pub fn save_style_vector(
    pictures: &[StylePicture],
    output: &Path,
    device: Device,
) -> Result<StyleVector> {
    let networks = ArbitraryNetworks::load(device)?;
    let vector = networks.mixed_vector(pictures)?;
    let source = pictures
        .iter()
        .map(|p| {
            let name = p
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if pictures.len() == 1 {
                name
            } else {
                format!("{name}:{}", p.weight)
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let saved = StyleVector::new(&vector, &source)?;
    saved.save(output)?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_parse_with_weights_and_colons_in_names() {
        let pictures = parse_pictures("a.jpg:0.7, dir/b.png:0.3").unwrap();
        assert_eq!(pictures.len(), 2);
        assert_eq!(pictures[0].path, PathBuf::from("a.jpg"));
        assert_eq!(pictures[0].weight, 0.7);
        assert_eq!(pictures[1].label(), "b");
        let named = parse_pictures("c:/x y.jpg").unwrap();
        assert_eq!(named[0].path, PathBuf::from("c:/x y.jpg"));
        assert_eq!(named[0].weight, 1.0);
        assert_eq!(pictures_label(&named), "x-y");
        assert!(parse_pictures("a.jpg:0").is_err());
        assert!(parse_pictures("a.jpg:-1").is_err());
        assert!(parse_pictures("a.jpg,,b.jpg").is_err());
    }

    #[test]
    fn a_style_picture_excludes_a_model_and_a_style() {
        let pictures = StyleSource::from_args(None, None, Some("a.jpg")).unwrap();
        assert!(matches!(pictures, StyleSource::Pictures(ref p) if p.len() == 1));
        let model = Path::new("m.safetensors");
        assert!(StyleSource::from_args(Some(model), None, Some("a.jpg")).is_err());
        assert!(StyleSource::from_args(None, Some("3"), Some("a.jpg")).is_err());
        assert_eq!(
            StyleSource::from_args(Some(model), Some("3"), None).unwrap(),
            StyleSource::Model {
                path: Some(model.to_path_buf()),
                style: Some("3".into())
            }
        );
    }
}
