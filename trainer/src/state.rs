//! The trainer's state and its step: a transformer network learns to minimise the perceptual
//! loss (content, style and total variation, see `models::loss`) over photo batches. The loop
//! around it is `crate::run`'s.
//!
//! One step: stylize the batch, take the content targets from a no-grad VGG pass of the batch
//! that stops at the deepest content tap, run the stylized batch through the VGG up to the
//! deepest tap, sum the weighted losses, back-propagate, apply Adam. Nothing in a step waits for
//! the device; the losses are read back only on logging and checkpoint steps.
//!
//! Mixed precision (bf16/f16): the network runs on a low-precision copy of the f32 master
//! weights, the VGG runs in the same precision, features are widened to f32 for the losses
//! (Gram sums overflow f16), gradients are widened to f32 and Adam updates the f32 master
//! weights, which are then copied back. f16 adds dynamic loss scaling.

use std::path::Path;

use models::precision::to_channels_last;
use models::vgg::{Tap, Vgg};
use models::{loss, Model, ModelMeta, NetSpec, Precision, TrainingSummary};
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;
use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// f16 dynamic loss scaling, as `torch.cuda.amp.GradScaler`'s defaults.
const INITIAL_LOSS_SCALE: f64 = 65536.0;
const LOSS_SCALE_GROWTH_INTERVAL: u64 = 2000;

/// The loss terms of one step, still on the device (reading them would synchronise).
#[derive(Debug)]
pub struct StepLosses {
    /// Weighted content loss.
    pub content: Tensor,
    /// Weighted style loss of each style tap (layer weight and style weight applied).
    pub style_layers: Vec<Tensor>,
    /// Weighted total-variation loss.
    pub tv: Tensor,
    pub total: Tensor,
}

/// The loss terms read back to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct LossValues {
    pub content: f64,
    pub style_layers: Vec<f64>,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

impl StepLosses {
    /// Reads every term with one device-to-host transfer.
    pub fn read(&self) -> Result<LossValues> {
        let mut terms = vec![
            self.content.shallow_clone(),
            self.tv.shallow_clone(),
            self.total.shallow_clone(),
        ];
        terms.extend(self.style_layers.iter().map(Tensor::shallow_clone));
        let terms: Vec<Tensor> = terms
            .iter()
            .map(|t| t.to_kind(Kind::Double).reshape([1]))
            .collect();
        let values = Vec::<f64>::try_from(Tensor::cat(&terms, 0).to_device(Device::Cpu))?;
        let style_layers = values[3..].to_vec();
        Ok(LossValues {
            content: values[0],
            tv: values[1],
            total: values[2],
            style: style_layers.iter().sum(),
            style_layers,
        })
    }
}

impl LossValues {
    /// The first non-finite term, by name (for the error that stops training).
    pub fn non_finite_term(&self, style_taps: &[String]) -> Option<String> {
        if !self.content.is_finite() {
            return Some("content".into());
        }
        for (tap, value) in style_taps.iter().zip(&self.style_layers) {
            if !value.is_finite() {
                return Some(format!("style ({tap})"));
            }
        }
        if !self.tv.is_finite() {
            return Some("total variation".into());
        }
        (!self.total.is_finite()).then(|| "total".into())
    }
}

/// The network being trained, its loss network and style targets, and the optimizer.
pub struct Trainer {
    pub config: TrainConfig,
    device: Device,
    precision: Precision,
    /// The f32 master weights; this is what gets saved.
    pub model: Model,
    /// Low-precision working copy for bf16/f16, `None` for f32.
    work: Option<Model>,
    param_names: Vec<String>,
    master_params: Vec<Tensor>,
    work_params: Vec<Tensor>,
    vgg: Vgg,
    content_taps: Vec<Tap>,
    /// Content taps followed by style taps, the features asked of the stylized batch.
    loss_taps: Vec<Tap>,
    /// Per style, per style tap: the target Gram matrix `[1, C, C]`, f32.
    style_grams: Vec<Vec<Tensor>>,
    adam: Adam,
    /// Styles of an extended model before the trained ones (0 for a network of its own): the
    /// trained styles' rows follow theirs.
    base_styles: usize,
    /// Per parameter: whether it holds one γ or β row per style.
    per_style_rows: Vec<bool>,
    /// Optimizer steps done.
    pub step: u64,
    loss_scale: f64,
    steps_since_overflow: u64,
}

impl Trainer {
    /// A fresh run: weights initialised from `config.seed`. `style_images` are the decoded
    /// style images `[3, H, W]` (already resized to the style size), one per style.
    pub fn new(
        config: TrainConfig,
        style_images: &[Tensor],
        vgg: Vgg,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        config.validate()?;
        tch::manual_seed(config.seed as i64);
        let meta = model_meta(&config)?;
        // Initialise on the CPU so the same seed gives the same weights on every device.
        let initial = Model::new(meta.clone(), Device::Cpu)?;
        let mut model = Model::new(meta, device)?;
        let named = variables_in_order(&initial)?;
        model.set_variables(Path::new("initialisation"), named)?;
        Self::assemble(config, model, style_images, vgg, device, precision)
    }

    /// A run that adds its styles to `base`, a multi-style model of `config.arch` with the
    /// styles `config.extend_base_styles` (Dumoulin et al. 2017, §5): every weight is the
    /// base's, and each new style's γ/β rows start as the mean of the base's rows. Until
    /// `config.frozen_steps()` only those rows train, so the old styles stay bit-identical.
    pub fn extending(
        config: TrainConfig,
        base: &Model,
        style_images: &[Tensor],
        vgg: Vgg,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        config.validate()?;
        let n_base = config.extend_base_styles.len();
        let n_new = config.style_images.len() as i64;
        let meta = model_meta(&config)?;
        if base.meta.spec != NetSpec::preset(&config.arch)?.with_styles(n_base) {
            return Err(Error::Config(format!(
                "the extended model is no {} network of {n_base} styles",
                config.arch
            )));
        }
        let mut model = Model::new(meta, device)?;
        let base_vars = base.vars.variables();
        let named = model
            .meta
            .spec
            .variables()
            .into_iter()
            .map(|(name, shape)| {
                let base_var = base_vars
                    .get(&name)
                    .ok_or_else(|| Error::Config(format!("the extended model has no `{name}`")))?
                    .detach()
                    .to_device(Device::Cpu);
                if base_var.size() == shape {
                    return Ok((name, base_var));
                }
                // γ/β: the base's rows (one row where the base had a single style), then the
                // new styles' rows, their mean.
                let rows = if base_var.dim() == 1 {
                    base_var.unsqueeze(0)
                } else {
                    base_var
                };
                let channels = rows.size()[1];
                let mean = rows
                    .mean_dim(0, true, Kind::Float)
                    .expand([n_new, channels], false);
                Ok((name, Tensor::cat(&[rows, mean], 0)))
            })
            .collect::<Result<Vec<_>>>()?;
        model.set_variables(Path::new("extended model"), named)?;
        Self::assemble(config, model, style_images, vgg, device, precision)
    }

    /// Continues from a checkpoint: weights, moments, step and loss scale as saved. `config` is
    /// the checkpoint's, possibly with a new step count or logging settings.
    pub fn from_checkpoint(
        config: TrainConfig,
        checkpoint: &Checkpoint,
        style_images: &[Tensor],
        vgg: Vgg,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        config.validate()?;
        let meta = model_meta(&config)?;
        let mut model = Model::new(meta, device)?;
        let weights = checkpoint
            .weights
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        model.set_variables(Path::new("checkpoint"), weights)?;
        let mut trainer = Self::assemble(config, model, style_images, vgg, device, precision)?;
        tch::no_grad(|| {
            for (slot, saved) in trainer.adam.m.iter_mut().zip(&checkpoint.adam_m) {
                slot.copy_(saved);
            }
            for (slot, saved) in trainer.adam.v.iter_mut().zip(&checkpoint.adam_v) {
                slot.copy_(saved);
            }
        });
        trainer.adam.n_updates = checkpoint.adam_updates;
        trainer.step = checkpoint.step;
        trainer.loss_scale = checkpoint.loss_scale;
        Ok(trainer)
    }

    fn assemble(
        config: TrainConfig,
        model: Model,
        style_images: &[Tensor],
        mut vgg: Vgg,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        precision.check_device(device)?;
        if style_images.len() != config.style_images.len() {
            return Err(Error::Config(
                "one decoded image per style is needed".into(),
            ));
        }
        let parse_taps = |names: &[String]| -> Result<Vec<Tap>> {
            names
                .iter()
                .map(|n| n.parse::<Tap>().map_err(Error::from))
                .collect()
        };
        let content_taps = parse_taps(&config.content_taps)?;
        let style_taps = parse_taps(&config.style_taps)?;
        let available = vgg.kind().taps();
        if let Some(tap) = content_taps
            .iter()
            .chain(&style_taps)
            .find(|t| !available.contains(t))
        {
            return Err(Error::Config(format!("{} has no layer {tap}", vgg.kind())));
        }

        // Style targets once, in f32, before the VGG is narrowed.
        let style_grams = tch::no_grad(|| -> Result<Vec<Vec<Tensor>>> {
            style_images
                .iter()
                .map(|image| {
                    let batch = image.to_device(device).to_kind(Kind::Float).unsqueeze(0);
                    let features = vgg.features(&batch, &style_taps)?;
                    Ok(features.iter().map(loss::gram).collect())
                })
                .collect()
        })?;
        let mut loss_taps = content_taps.clone();
        loss_taps.extend(&style_taps);

        let param_names: Vec<String> = model
            .meta
            .spec
            .variables()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let master_params = params_in_order(&model, &param_names)?;
        let work = if precision == Precision::F32 {
            None
        } else {
            vgg.to_kind(precision.kind());
            let mut work = Model::new(model.meta.clone(), device)?;
            work.vars.set_kind(precision.kind());
            Some(work)
        };
        let work_params = match &work {
            Some(work) => params_in_order(work, &param_names)?,
            None => master_params.iter().map(Tensor::shallow_clone).collect(),
        };
        let adam = Adam::new(&master_params);
        let n_styles = config.n_styles() as i64;
        let per_style_rows = master_params
            .iter()
            .map(|p| n_styles > 1 && p.dim() == 2 && p.size()[0] == n_styles)
            .collect();
        let base_styles = config.extend_base_styles.len();
        let mut trainer = Self {
            config,
            device,
            precision,
            model,
            work,
            param_names,
            master_params,
            work_params,
            vgg,
            content_taps,
            loss_taps,
            style_grams,
            adam,
            base_styles,
            per_style_rows,
            step: 0,
            loss_scale: if precision == Precision::F16 {
                INITIAL_LOSS_SCALE
            } else {
                1.0
            },
            steps_since_overflow: 0,
        };
        trainer.refresh_work_copy();
        trainer.set_trainable();
        Ok(trainer)
    }

    /// Whether this step trains only the new styles' rows of an extended model.
    fn frozen(&self) -> bool {
        self.step < self.config.frozen_steps()
    }

    /// While frozen, the weights that are not per-style rows take no gradient at all (the
    /// backward pass skips them); afterwards every weight trains.
    fn set_trainable(&mut self) {
        let frozen = self.frozen();
        for (param, &rows) in self.work_params.iter_mut().zip(&self.per_style_rows) {
            let trainable = !frozen || rows;
            if param.requires_grad() != trainable {
                let _ = param.set_requires_grad(trainable);
            }
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The f16 loss scale (1 in other precisions).
    pub fn loss_scale(&self) -> f64 {
        self.loss_scale
    }

    /// Names of the parameters, in the order of `parameters()`.
    pub fn parameter_names(&self) -> &[String] {
        &self.param_names
    }

    /// The f32 master weights.
    pub fn parameters(&self) -> &[Tensor] {
        &self.master_params
    }

    fn refresh_work_copy(&mut self) {
        if self.work.is_some() {
            tch::no_grad(|| {
                for (work, master) in self.work_params.iter_mut().zip(&self.master_params) {
                    work.copy_(master);
                }
            });
        }
    }

    /// The losses of the current weights on `batch` (`[B, 3, S, S]`, RGB [0, 255]), with the
    /// graph attached for `backward`.
    pub fn losses(&self, batch: &Tensor) -> Result<StepLosses> {
        let config = &self.config;
        let style_index = (self.step % self.style_grams.len() as u64) as usize;
        let net = &self.work.as_ref().unwrap_or(&self.model).net;
        let kind = self.precision.kind();
        // Non-blocking from pinned memory on CUDA; a plain conversion on the CPU.
        let x = batch.to_device_(self.device, kind, self.device.is_cuda(), false);
        let style_params = net.single_style_params(self.base_styles + style_index)?;
        let stylized = net.forward(&x, &style_params)?;

        // The loss network runs channels-last: oneDNN's convolutions take NHWC natively, and
        // ATen's NCHW max-pool is several times slower than its NHWC one (together about 10%
        // of a step at 128², measured). The transformer stays NCHW, where its group norms are
        // fast.
        let content_targets =
            tch::no_grad(|| self.vgg.features(&to_channels_last(&x), &self.content_taps))?;
        let features = self
            .vgg
            .features(&to_channels_last(&stylized), &self.loss_taps)?;
        let widen = |t: &Tensor| t.to_kind(Kind::Float);
        let n_content = self.content_taps.len();
        let content_features: Vec<Tensor> = features[..n_content].iter().map(widen).collect();
        let content_targets: Vec<Tensor> = content_targets.iter().map(widen).collect();
        let normalised = config.loss_convention.normalised();
        let content = if normalised {
            let relative =
                content_features
                    .iter()
                    .zip(&content_targets)
                    .map(|(feature, target)| {
                        let scale = target
                            .square()
                            .mean(Kind::Float)
                            .clamp_min(f64::MIN_POSITIVE);
                        loss::content_loss(
                            std::slice::from_ref(feature),
                            std::slice::from_ref(target),
                        ) / scale
                    });
            relative
                .reduce(|total, term| total + term)
                .unwrap_or_else(|| Tensor::from(0f32))
        } else {
            loss::content_loss(&content_features, &content_targets)
        } * config.content_weight;
        let style_layers: Vec<Tensor> = features[n_content..]
            .iter()
            .zip(&self.style_grams[style_index])
            .zip(&config.style_layer_weights)
            .map(|((feature, target), &weight)| {
                let layer = if normalised {
                    loss::balanced_style_loss(&widen(feature), target)
                } else {
                    loss::style_loss(&[widen(feature)], std::slice::from_ref(target), &[1.0])
                };
                layer * (weight * config.style_weight)
            })
            .collect();
        // Balanced: neighbour differences of pixels in [0, 1].
        let tv_scale = if normalised {
            1.0 / (255.0 * 255.0)
        } else {
            1.0
        };
        let tv = loss::tv_loss(&widen(&stylized)) * (config.tv_weight * tv_scale);
        let mut total = &content + &tv;
        for term in &style_layers {
            total += term;
        }
        Ok(StepLosses {
            content,
            style_layers,
            tv,
            total,
        })
    }

    /// The f32 gradients of the current weights on `batch`, and the losses (for tests and the
    /// reference comparison; `step` does the same and then updates).
    pub fn gradients(&mut self, batch: &Tensor) -> Result<(StepLosses, Vec<Tensor>)> {
        self.set_trainable();
        for param in &mut self.work_params {
            param.zero_grad();
        }
        let losses = self.losses(batch)?;
        if self.loss_scale == 1.0 {
            losses.total.backward();
        } else {
            (&losses.total * self.loss_scale).backward();
        }
        let frozen = self.frozen();
        let old_rows = Tensor::arange(self.base_styles as i64, (Kind::Int64, self.device));
        let grads = self
            .work_params
            .iter()
            .zip(&self.per_style_rows)
            .map(|(p, &rows)| {
                if !p.requires_grad() {
                    // A frozen weight: zero moments, so Adam leaves it exactly as it is.
                    return Tensor::zeros(p.size(), (Kind::Float, p.device()));
                }
                let grad = p.grad().to_kind(Kind::Float);
                let grad = if self.loss_scale == 1.0 {
                    grad
                } else {
                    grad / self.loss_scale
                };
                if frozen && rows && self.base_styles > 0 {
                    grad.index_fill(0, &old_rows, 0.0)
                } else {
                    grad
                }
            })
            .collect();
        Ok((losses, grads))
    }

    /// One optimizer step on `batch`.
    pub fn step(&mut self, batch: &Tensor) -> Result<StepLosses> {
        let (losses, grads) = self.gradients(batch)?;
        let lr = self.config.lr_at(self.step);
        if self.precision == Precision::F16 {
            // As torch's GradScaler: skip steps whose gradients overflowed and halve the scale;
            // double it after a run of good steps. Needs one read per step, as GradScaler does.
            let finite = grads
                .iter()
                .map(|g| g.isfinite().all())
                .reduce(|a, b| a.logical_and(&b))
                .map(|t| t.int64_value(&[]) != 0)
                .unwrap_or(true);
            if !finite {
                self.loss_scale /= 2.0;
                self.steps_since_overflow = 0;
                self.step += 1;
                return Ok(losses);
            }
            self.steps_since_overflow += 1;
            if self.steps_since_overflow >= LOSS_SCALE_GROWTH_INTERVAL {
                self.loss_scale *= 2.0;
                self.steps_since_overflow = 0;
            }
        }
        self.adam.step(&self.master_params, &grads, lr);
        self.refresh_work_copy();
        self.step += 1;
        Ok(losses)
    }

    /// Whether every master weight is finite (one read).
    pub fn weights_are_finite(&self) -> Result<bool> {
        let all = self
            .master_params
            .iter()
            .map(|p| p.isfinite().all())
            .reduce(|a, b| a.logical_and(&b));
        Ok(match all {
            Some(all) => all.to_device(Device::Cpu).int64_value(&[]) != 0,
            None => true,
        })
    }

    /// The training state as a checkpoint (CPU copies).
    pub fn checkpoint(&self, data_state: datasets::StreamState) -> Checkpoint {
        let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu);
        Checkpoint {
            config: self.config.clone(),
            step: self.step,
            adam_updates: self.adam.n_updates,
            data_state,
            loss_scale: self.loss_scale,
            weights: self
                .param_names
                .iter()
                .cloned()
                .zip(self.master_params.iter().map(cpu))
                .collect(),
            adam_m: self.adam.m.iter().map(cpu).collect(),
            adam_v: self.adam.v.iter().map(cpu).collect(),
        }
    }

    /// Stylizes one image `[3, H, W]` with each style, f32 master weights, no grad.
    pub fn stylize(&self, image: &Tensor) -> Result<Vec<Tensor>> {
        let x = image
            .to_device(self.device)
            .to_kind(Kind::Float)
            .unsqueeze(0);
        (0..self.style_grams.len())
            .map(|style| {
                let params = self
                    .model
                    .net
                    .single_style_params(self.base_styles + style)?;
                let y = tch::no_grad(|| self.model.net.forward(&x, &params))?;
                Ok(y.squeeze_dim(0).clamp(0.0, 255.0))
            })
            .collect()
    }

    /// Writes the trained model with its training summary.
    pub fn save_model(&mut self, path: &Path, dataset_size: usize) -> Result<()> {
        let config = &self.config;
        let mut extra = std::collections::HashMap::new();
        extra.insert("arch".to_string(), config.arch.clone());
        extra.insert("lr".to_string(), config.lr.to_string());
        extra.insert("seed".to_string(), config.seed.to_string());
        extra.insert("precision".to_string(), config.precision.clone());
        extra.insert("style_taps".to_string(), config.style_taps.join(","));
        extra.insert("content_taps".to_string(), config.content_taps.join(","));
        extra.insert(
            "loss_convention".to_string(),
            config.loss_convention.to_string(),
        );
        extra.insert(
            "style_layer_weights".to_string(),
            join_numbers(&config.style_layer_weights),
        );
        if let Some(size) = config.style_size {
            extra.insert("style_size".to_string(), size.to_string());
        }
        if let Some(base) = &config.extend {
            extra.insert("extends".to_string(), base.display().to_string());
            extra.insert(
                "extend_finetune_steps".to_string(),
                config.extend_finetune_steps.to_string(),
            );
        }
        self.model.meta.training = Some(TrainingSummary {
            style_images: config
                .style_images
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            loss_network: config.loss_net.clone(),
            content_weight: config.content_weight,
            style_weight: config.style_weight,
            tv_weight: config.tv_weight,
            steps: self.step,
            batch_size: config.batch_size,
            image_size: config.image_size,
            dataset_size,
            date: utc_date(time::OffsetDateTime::now_utc()),
            atelier_version: env!("CARGO_PKG_VERSION").to_string(),
            extra,
        });
        self.model.save(path)?;
        Ok(())
    }
}

/// The header of the network a run trains: its preset with every style of the run.
fn model_meta(config: &TrainConfig) -> Result<ModelMeta> {
    Ok(ModelMeta {
        spec: NetSpec::preset(&config.arch)?.with_styles(config.n_styles()),
        styles: config.model_style_names(),
        training: None,
    })
}

fn join_numbers(values: &[f64]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn variables_in_order(model: &Model) -> Result<Vec<(String, Tensor)>> {
    let names: Vec<String> = model
        .meta
        .spec
        .variables()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let params = params_in_order(model, &names)?;
    Ok(names.into_iter().zip(params).collect())
}

fn params_in_order(model: &Model, names: &[String]) -> Result<Vec<Tensor>> {
    let variables = model.vars.variables();
    names
        .iter()
        .map(|name| {
            variables
                .get(name)
                .map(Tensor::shallow_clone)
                .ok_or_else(|| Error::Config(format!("the network has no variable `{name}`")))
        })
        .collect()
}

/// `YYYY-MM-DD` of `at` in UTC.
fn utc_date(at: time::OffsetDateTime) -> String {
    let date = at.to_offset(time::UtcOffset::UTC).date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        let at = |unix: i64| time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
        assert_eq!(utc_date(at(0)), "1970-01-01");
        // a leap day, and the last second of a century year that is a leap year
        assert_eq!(utc_date(at(951_782_400)), "2000-02-29");
        assert_eq!(utc_date(at(978_307_199)), "2000-12-31");
        // 2023-11-14 22:13:20 UTC is the 15th in UTC+10, and still the 14th here
        let sydney = at(1_700_000_000).to_offset(time::UtcOffset::from_hms(10, 0, 0).unwrap());
        assert_eq!(sydney.date().day(), 15);
        assert_eq!(utc_date(sydney), "2023-11-14");
    }
}
