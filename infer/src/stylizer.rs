//! A loaded style network on one device and precision, with its style (a mix of a trained
//! model's styles, or a style vector for the arbitrary network) resolved once, and the
//! pointwise touches applied after the network (strength, colour preservation).

use models::{Model, NormStats, Precision, StyleParams, StylePredictor};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Which styles of a (multi-style) model to apply, with weights summing to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleMix {
    /// One weight per style of the model.
    pub weights: Vec<f64>,
    /// Names the mix in output file names: the style's name, or e.g. `3-12` for a mix.
    pub label: String,
}

impl StyleMix {
    /// Parses `--style`: `I`, `NAME`, or `I:W,J:W` (indices or names, weights normalised to
    /// sum to 1). `None` picks `default`.
    pub fn parse(selection: Option<&str>, styles: &[String], default: usize) -> Result<Self> {
        let n = styles.len();
        let Some(selection) = selection.map(str::trim).filter(|s| !s.is_empty()) else {
            let index = default.min(n.saturating_sub(1));
            return Ok(Self::single(index, styles));
        };
        let mut weights = vec![0.0; n];
        let mut picked = Vec::new();
        for part in selection.split(',') {
            let (name, weight) = match part.rsplit_once(':') {
                Some((name, weight)) => {
                    let w: f64 = weight.trim().parse().map_err(|_| {
                        Error::Style(format!("`{weight}` is not a weight in `{part}`"))
                    })?;
                    (name.trim(), w)
                }
                None => (part.trim(), 1.0),
            };
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(Error::Style(format!(
                    "weight {weight} of `{name}` must be >= 0"
                )));
            }
            let index = style_index(name, styles)?;
            if !picked.contains(&index) {
                picked.push(index);
            }
            weights[index] += weight;
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::Style(format!(
                "the weights of `{selection}` sum to 0"
            )));
        }
        if picked.len() == 1 {
            return Ok(Self::single(picked[0], styles));
        }
        let label = picked
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("-");
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
            label,
        })
    }

    /// Style `index` alone.
    pub fn single(index: usize, styles: &[String]) -> Self {
        let mut weights = vec![0.0; styles.len()];
        if let Some(w) = weights.get_mut(index) {
            *w = 1.0;
        }
        let label = styles
            .get(index)
            .map(|s| file_safe(s))
            .unwrap_or_else(|| index.to_string());
        Self { weights, label }
    }
}

fn style_index(name: &str, styles: &[String]) -> Result<usize> {
    if let Some(index) = styles.iter().position(|s| s == name) {
        return Ok(index);
    }
    match name.parse::<usize>() {
        Ok(index) if index < styles.len() => Ok(index),
        Ok(index) => Err(Error::Style(format!(
            "style {index} does not exist (the model has {} styles, 0 to {})",
            styles.len(),
            styles.len().saturating_sub(1)
        ))),
        Err(_) => Err(Error::Style(format!(
            "no style named `{name}` (the model's styles: {})",
            styles.join(", ")
        ))),
    }
}

/// A style name made safe for file names.
pub(crate) fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if safe.is_empty() {
        "styled".into()
    } else {
        safe
    }
}

/// What happens to the network's output before it is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finish {
    /// 1 = the network's output; lower blends linearly with the original (with a style
    /// vector: moves the vector towards the photo's own instead).
    pub strength: f64,
    /// Keep the original's chroma: only the stylized luminance is used.
    pub preserve_color: bool,
}

impl Default for Finish {
    fn default() -> Self {
        Self {
            strength: 1.0,
            preserve_color: false,
        }
    }
}

impl Finish {
    /// Colour preservation, then strength as a linear blend with `original`, on `[3, H, W]`
    /// or `[B, 3, H, W]` RGB in [0, 255] (the network's output and the photo it came from).
    pub fn apply(&self, original: &Tensor, stylized: Tensor) -> Tensor {
        let mut out = stylized;
        if self.preserve_color {
            // YCbCr with the original's Cb and Cr: changing only Y moves R, G and B equally.
            out = original + (luminance(&out) - luminance(original));
        }
        if self.strength < 1.0 {
            out = original * (1.0 - self.strength) + out * self.strength;
        }
        out
    }

    /// What is left to apply to a network conditioned on a style vector whose strength acted
    /// on the vector already (`interpolate_style_vector`): colour preservation only.
    pub fn after_style_vector(self) -> Self {
        Self {
            strength: 1.0,
            ..self
        }
    }
}

/// Magenta's interpolation of a style vector towards a photo's own (the predictor's vector of
/// the photo): `strength·style + (1 − strength)·photo`, how a style vector's strength acts.
pub fn interpolate_style_vector(style: &Tensor, photo: &Tensor, strength: f64) -> Tensor {
    style * strength + photo * (1.0 - strength)
}

/// A model ready to stylize: on its device, in its precision, with γ/β for the chosen style.
pub struct Stylizer {
    model: Model,
    style: Conditioning,
    device: Device,
    precision: Precision,
    finish: Finish,
    mix: StyleMix,
}

/// Where the stylizer's γ/β come from.
enum Conditioning {
    /// A trained model's style rows, mixed once (`StyleMix`).
    Rows(StyleParams),
    /// A style vector (the arbitrary network, Ghiasi et al. 2017).
    Vector(VectorStyle),
}

struct VectorStyle {
    /// The style pictures' vector, `[D]` f32.
    vector: Tensor,
    /// γ/β at `vector`: what every photo gets at strength 1.
    params: StyleParams,
    /// Gives each photo its own vector below strength 1 (Magenta's interpolation
    /// `v = s·v_style + (1 − s)·v_photo`), and new style pictures their vectors.
    predictor: StylePredictor,
}

/// The γ/β one photo is stylized with (`Stylizer::photo_style`).
pub struct PhotoStyle<'a>(PhotoParams<'a>);

enum PhotoParams<'a> {
    Shared(&'a StyleParams),
    Own(StyleParams),
}

impl PhotoStyle<'_> {
    fn params(&self) -> &StyleParams {
        match &self.0 {
            PhotoParams::Shared(params) => params,
            PhotoParams::Own(params) => params,
        }
    }
}

fn check_strength(finish: &Finish) -> Result<()> {
    if !(0.0..=1.0).contains(&finish.strength) {
        return Err(Error::Invalid(format!(
            "strength {} is not in 0..1",
            finish.strength
        )));
    }
    Ok(())
}

impl Stylizer {
    /// `model` must already live on `device` (load it there).
    pub fn new(
        mut model: Model,
        device: Device,
        precision: Precision,
        mix: StyleMix,
        finish: Finish,
    ) -> Result<Self> {
        precision.check_device(device)?;
        check_strength(&finish)?;
        if precision != Precision::F32 {
            model.vars.set_kind(precision.kind());
        }
        let params = tch::no_grad(|| model.net.style_params(&mix.weights))?;
        Ok(Self {
            model,
            style: Conditioning::Rows(params),
            device,
            precision,
            finish,
            mix,
        })
    }

    /// A network conditioned on a style vector (`NetSpec::style_vector_dim`) with `vector`
    /// (`[D]`, e.g. `StylePredictor::style_vector` of a painting), named `label` in output
    /// names. Both networks must already live on `device`. Below strength 1 the predictor runs
    /// on every photo (once, on the whole photo, also when it is tiled) and the style vector
    /// is interpolated towards the photo's own; the output is not blended with the photo.
    pub fn with_style_vector(
        mut model: Model,
        predictor: StylePredictor,
        device: Device,
        precision: Precision,
        vector: &Tensor,
        label: &str,
        finish: Finish,
    ) -> Result<Self> {
        precision.check_device(device)?;
        check_strength(&finish)?;
        if precision != Precision::F32 {
            model.vars.set_kind(precision.kind());
        }
        let vector = vector.to_device(Device::Cpu).to_kind(Kind::Float);
        let params = tch::no_grad(|| model.net.vector_style_params(&vector))?;
        Ok(Self {
            model,
            style: Conditioning::Vector(VectorStyle {
                vector,
                params,
                predictor,
            }),
            device,
            precision,
            finish,
            mix: StyleMix {
                weights: Vec::new(),
                label: file_safe(label),
            },
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The style mix of a trained model; with a style vector its weights are empty and only
    /// the label (the pictures' names) is set.
    pub fn mix(&self) -> &StyleMix {
        &self.mix
    }

    /// Names the style in output file names (`photo_<label>.jpg`).
    pub fn label(&self) -> &str {
        &self.mix.label
    }

    /// The style vector, when the network is conditioned on one.
    pub fn style_vector(&self) -> Option<&Tensor> {
        match &self.style {
            Conditioning::Vector(style) => Some(&style.vector),
            Conditioning::Rows(_) => None,
        }
    }

    /// The style predictor of a network conditioned on a style vector: what turns a new
    /// style picture into a vector for `set_style_vector` (e.g. a server's uploads).
    pub fn style_predictor(&self) -> Option<&StylePredictor> {
        match &self.style {
            Conditioning::Vector(style) => Some(&style.predictor),
            Conditioning::Rows(_) => None,
        }
    }

    /// Switches to another style mix of the same model (contact sheets run every style).
    pub fn set_mix(&mut self, mix: StyleMix) -> Result<()> {
        let params = tch::no_grad(|| self.model.net.style_params(&mix.weights))?;
        self.style = Conditioning::Rows(params);
        self.mix = mix;
        Ok(())
    }

    /// Switches to another style vector (contact sheets of several style pictures).
    pub fn set_style_vector(&mut self, vector: &Tensor, label: &str) -> Result<()> {
        let Conditioning::Vector(style) = &mut self.style else {
            return Err(Error::Style(
                "the model takes style weights, not a style vector".into(),
            ));
        };
        let vector = vector.to_device(Device::Cpu).to_kind(Kind::Float);
        style.params = tch::no_grad(|| self.model.net.vector_style_params(&vector))?;
        style.vector = vector;
        self.mix.label = file_safe(label);
        Ok(())
    }

    /// Whether each photo gets γ/β of its own (a style vector below strength 1), so photos
    /// cannot share a network call.
    pub fn per_photo_style(&self) -> bool {
        matches!(&self.style, Conditioning::Vector(_)) && self.finish.strength < 1.0
    }

    /// The γ/β `photo` (`[3, H, W]` or `[1, 3, H, W]`, RGB in [0, 255]: the whole photo, not a
    /// tile) is stylized with: the stylizer's own, or with a style vector below strength 1
    /// `s·v_style + (1 − s)·v_photo`, `v_photo` being the predictor's vector of the photo.
    pub fn photo_style(&self, photo: &Tensor) -> Result<PhotoStyle<'_>> {
        let style = match &self.style {
            Conditioning::Rows(params) => return Ok(PhotoStyle(PhotoParams::Shared(params))),
            Conditioning::Vector(style) => style,
        };
        if !self.per_photo_style() {
            return Ok(PhotoStyle(PhotoParams::Shared(&style.params)));
        }
        let photo = match photo.size().as_slice() {
            [3, _, _] => photo.shallow_clone(),
            [1, 3, _, _] => photo.squeeze_dim(0),
            other => {
                return Err(Error::Invalid(format!(
                    "a photo's own style vector needs one photo, got a batch of shape {other:?}"
                )))
            }
        };
        // The predictor sees 8-bit pictures (as when it reads a style picture).
        let picture = image::DynamicImage::ImageRgb8(models::pixels::tensor_to_image(&photo)?);
        let _guard = tch::no_grad_guard();
        let own = style
            .predictor
            .style_vector(&picture)?
            .to_device(Device::Cpu);
        let vector = interpolate_style_vector(&style.vector, &own, self.finish.strength);
        Ok(PhotoStyle(PhotoParams::Own(
            self.model.net.vector_style_params(&vector)?,
        )))
    }

    /// Stylizes `[B, 3, H, W]` RGB in [0, 255] (any device); returns f32 on the device. When
    /// every photo has its own γ/β (`per_photo_style`) they run one at a time.
    pub fn stylize(&self, batch: &Tensor) -> Result<Tensor> {
        if !self.per_photo_style() {
            return self.stylize_with_stats(batch, NormStats::Own);
        }
        let photos = (0..batch.size()[0])
            .map(|i| {
                let photo = batch.narrow(0, i, 1);
                let style = self.photo_style(&photo)?;
                self.stylize_photo(&photo, &style, NormStats::Own)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&photos, 0))
    }

    /// As `stylize`, with instance-norm statistics recorded or replayed; with per-photo γ/β
    /// the batch must be one whole photo (tiles use `photo_style` and `stylize_photo`).
    pub fn stylize_with_stats(&self, batch: &Tensor, stats: NormStats) -> Result<Tensor> {
        let style = self.photo_style(batch)?;
        self.stylize_photo(batch, &style, stats)
    }

    /// Stylizes `[B, 3, H, W]` (a photo or a tile of one) with γ/β from `photo_style`.
    pub fn stylize_photo(
        &self,
        batch: &Tensor,
        style: &PhotoStyle,
        stats: NormStats,
    ) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let original = batch.to_device(self.device).to_kind(Kind::Float);
        let mut input = original.to_kind(self.precision.kind());
        // ATen's CPU convolutions run fastest on NHWC (oneDNN); CUDA picks its own layout.
        if self.device == Device::Cpu {
            input = models::precision::to_channels_last(&input);
        }
        let stylized = self
            .model
            .net
            .forward_with_stats(&input, style.params(), stats)?
            .to_kind(Kind::Float);
        Ok(self.apply_finish(&original, stylized))
    }

    fn apply_finish(&self, original: &Tensor, stylized: Tensor) -> Tensor {
        match self.style {
            Conditioning::Rows(_) => self.finish.apply(original, stylized),
            Conditioning::Vector(_) => self.finish.after_style_vector().apply(original, stylized),
        }
    }
}

/// ITU-R BT.601 luma of `[3, H, W]` or `[B, 3, H, W]`, with a channel dimension of 1.
fn luminance(rgb: &Tensor) -> Tensor {
    let coefficients = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .to_device(rgb.device())
        .view([3, 1, 1]);
    let channels = rgb.dim() as i64 - 3;
    (rgb * coefficients).sum_dim_intlist(&[channels][..], true, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn style_selection_parses_indices_names_and_mixes() {
        let styles = vec![
            "mosaic".to_string(),
            "candy".to_string(),
            "udnie".to_string(),
        ];
        let mix = StyleMix::parse(Some("candy"), &styles, 0).unwrap();
        assert_eq!(mix.weights, vec![0.0, 1.0, 0.0]);
        assert_eq!(mix.label, "candy");
        let mix = StyleMix::parse(Some("0:1,2:3"), &styles, 0).unwrap();
        assert_eq!(mix.weights, vec![0.25, 0.0, 0.75]);
        assert_eq!(mix.label, "0-2");
        assert_eq!(StyleMix::parse(None, &names(26), 19).unwrap().label, "19");
        assert!(StyleMix::parse(Some("3"), &styles, 0).is_err());
        assert!(StyleMix::parse(Some("0:0"), &styles, 0).is_err());
        assert!(StyleMix::parse(Some("nope"), &styles, 0).is_err());
    }

    #[test]
    fn preserve_color_keeps_chroma_and_strength_blends() {
        let spec = models::NetSpec::johnson_half();
        let meta = models::ModelMeta {
            spec,
            styles: vec!["random".into()],
            training: None,
        };
        let model = Model::new(meta, Device::Cpu).unwrap();
        let mix = StyleMix::parse(None, &model.meta.styles, 0).unwrap();
        let finish = Finish {
            strength: 0.0,
            preserve_color: false,
        };
        let stylizer = Stylizer::new(model, Device::Cpu, Precision::F32, mix, finish).unwrap();
        let input = Tensor::rand([1, 3, 32, 40], (Kind::Float, Device::Cpu)) * 255.0;
        let out = stylizer.stylize(&input).unwrap();
        assert!(f64::try_from((out - &input).abs().max()).unwrap() < 1e-3);

        let gray = Tensor::full([1, 3, 4, 4], 100.0, (Kind::Float, Device::Cpu));
        let color = Tensor::from_slice(&[200.0f32, 50.0, 10.0])
            .view([1, 3, 1, 1])
            .expand([1, 3, 4, 4], false);
        let finish = Finish {
            strength: 1.0,
            preserve_color: true,
        };
        let mixed = Stylizer { finish, ..stylizer }.apply_finish(&color, gray.shallow_clone());
        let (y_out, y_gray) = (luminance(&mixed), luminance(&gray));
        assert!(f64::try_from((y_out - y_gray).abs().max()).unwrap() < 1e-3);
        // Chroma (channel differences) comes from the original.
        let diff = mixed.get(0).get(0) - mixed.get(0).get(1);
        assert!(f64::try_from((diff - 150.0).abs().max()).unwrap() < 1e-3);

        // One `[3, H, W]` image is finished as a batch of one is.
        let finish = Finish {
            strength: 0.3,
            preserve_color: true,
        };
        let batch = finish.apply(&color, gray.shallow_clone());
        let single = finish.apply(&color.get(0), gray.get(0));
        assert_eq!(single.size(), [3, 4, 4]);
        assert!(f64::try_from((batch.get(0) - single).abs().max()).unwrap() < 1e-4);
    }
}
