//! Training checkpoints: one `.safetensors` file, written atomically (temporary file, fsync,
//! rename), that holds everything needed to continue a run exactly.
//!
//! `__metadata__`: `format` = "atelier-checkpoint", `format_version`, `config` (the full
//! [`TrainConfig`] as JSON), `step` (optimizer steps done), `adam_updates`, `data_state` (the
//! photo stream's position, JSON), `loss_scale` (f16 dynamic loss scaling). Tensors: the model's
//! variables under their model-file names, and Adam's moments as `adam.m.<name>` and
//! `adam.v.<name>`, all f32 (bit-exact copies of the training state).
//!
//! There is no RNG state to save: weights are initialised once from the seed, and every later
//! random draw (epoch orders, crops) derives from (seed, epoch, file) inside the photo stream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::config::TrainConfig;
use crate::error::{Error, Result};

pub const FORMAT_NAME: &str = "atelier-checkpoint";
pub const FORMAT_VERSION: u32 = 1;

/// A checkpoint in memory (CPU tensors).
#[derive(Debug)]
pub struct Checkpoint {
    pub config: TrainConfig,
    pub step: u64,
    pub adam_updates: u64,
    pub data_state: datasets::StreamState,
    pub loss_scale: f64,
    /// Model variables, in `NetSpec::variables()` order.
    pub weights: Vec<(String, Tensor)>,
    /// Adam moments, in the same order as `weights`.
    pub adam_m: Vec<Tensor>,
    pub adam_v: Vec<Tensor>,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let json =
            |value: serde_json::Result<String>| value.map_err(|e| Error::Config(e.to_string()));
        let mut header = HashMap::new();
        header.insert("format".to_string(), FORMAT_NAME.to_string());
        header.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        header.insert(
            "config".to_string(),
            json(serde_json::to_string(&self.config))?,
        );
        header.insert("step".to_string(), self.step.to_string());
        header.insert("adam_updates".to_string(), self.adam_updates.to_string());
        header.insert(
            "data_state".to_string(),
            json(serde_json::to_string(&self.data_state))?,
        );
        header.insert("loss_scale".to_string(), self.loss_scale.to_string());
        let mut tensors = Vec::with_capacity(3 * self.weights.len());
        for (name, tensor) in &self.weights {
            tensors.push((name.clone(), tensor.shallow_clone()));
        }
        for ((name, _), (m, v)) in self
            .weights
            .iter()
            .zip(self.adam_m.iter().zip(&self.adam_v))
        {
            tensors.push((format!("adam.m.{name}"), m.shallow_clone()));
            tensors.push((format!("adam.v.{name}"), v.shallow_clone()));
        }
        models::file::save_safetensors(path, &tensors, &header)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Like [`Checkpoint::load`], from a file's contents; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::NotACheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(models::file::safetensors_error(&e, bytes.len())))?;
        let header = metadata
            .metadata()
            .clone()
            .ok_or_else(|| bad("no metadata header".to_string()))?;
        let get = |key: &str| {
            header
                .get(key)
                .ok_or_else(|| bad(format!("the header has no `{key}`")))
        };
        if get("format")? != FORMAT_NAME {
            return Err(bad(format!("format is not `{FORMAT_NAME}`")));
        }
        if get("format_version")?.parse::<u32>().ok() != Some(FORMAT_VERSION) {
            return Err(bad(format!(
                "unsupported format version (this atelier reads {FORMAT_VERSION})"
            )));
        }
        let config: TrainConfig =
            serde_json::from_str(get("config")?).map_err(|e| bad(format!("bad `config`: {e}")))?;
        let number = |key: &str| {
            get(key)?
                .parse::<u64>()
                .map_err(|e| bad(format!("bad `{key}`: {e}")))
        };
        let step = number("step")?;
        let adam_updates = number("adam_updates")?;
        let data_state = serde_json::from_str(get("data_state")?)
            .map_err(|e| bad(format!("bad `data_state`: {e}")))?;
        let loss_scale = get("loss_scale")?
            .parse::<f64>()
            .map_err(|e| bad(format!("bad `loss_scale`: {e}")))?;

        let mut tensors: HashMap<String, Tensor> = models::file::parse_safetensors(path, bytes)?
            .into_iter()
            .collect();
        let spec = models::NetSpec::preset(&config.arch)?.with_styles(config.n_styles());
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| bad(format!("missing tensor `{name}`")))
        };
        let (mut weights, mut adam_m, mut adam_v) = (Vec::new(), Vec::new(), Vec::new());
        for (name, _) in spec.variables() {
            weights.push((name.clone(), take(&name)?));
            adam_m.push(take(&format!("adam.m.{name}"))?);
            adam_v.push(take(&format!("adam.v.{name}"))?);
        }
        Ok(Self {
            config,
            step,
            adam_updates,
            data_state,
            loss_scale,
            weights,
            adam_m,
            adam_v,
        })
    }
}

/// The default checkpoint path: beside the model, `NAME.checkpoint.safetensors`.
pub fn default_path(output: &Path, checkpoint_dir: Option<&Path>) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    let name = format!("{stem}.checkpoint.safetensors");
    match checkpoint_dir {
        Some(dir) => dir.join(name),
        None => output.with_file_name(name),
    }
}
