//! Import of pytorch/examples `fast_neural_style` models.
//!
//! Johnson, Alahi, Li, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
//! (ECCV 2016), as implemented in pytorch/examples (`transformer_net.py`, BSD-3-Clause). Its
//! saved models (`.pth` / `.model`) are `torch.save`d state dicts whose names are exactly the
//! `johnson` preset's variables; files saved by old PyTorch versions also carry instance-norm
//! running statistics (`in*.running_mean`, `in*.running_var`, `num_batches_tracked`) that the
//! network never used (instance norm always normalises with the image's own statistics), so
//! they are dropped. Those old files are in the legacy (non-zip) `torch.save` format, read by
//! [`super::torch_legacy`]; newer ones are zip archives, read by [`super::torch_zip`].

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tch::{Device, Tensor};

use super::{torch_legacy, torch_zip};
use crate::error::{Error, Result};
use crate::file::{Model, ModelMeta, TrainingSummary};
use crate::spec::NetSpec;

/// State-dict suffixes of unused instance-norm running statistics.
const LEGACY_SUFFIXES: [&str; 3] = [".running_mean", ".running_var", ".num_batches_tracked"];

/// Reads a pytorch/examples `fast_neural_style` model (a `torch.save`d state dict, zip or legacy
/// format) into a `johnson` (or, by conv1's width, `johnson-half`) model on the CPU. The style is
/// named after the file stem. Unknown, missing or misshaped tensors are errors.
pub fn import_pytorch_examples(path: &Path) -> Result<Model> {
    model_from_state_dict(read_torch_save(path)?, path)
}

/// Like [`import_pytorch_examples`], from a file's contents; `path` names the style and the
/// source in messages.
pub fn pytorch_examples_from_bytes(bytes: &[u8], path: &Path) -> Result<Model> {
    model_from_state_dict(parse_torch_save(bytes, path)?, path)
}

fn model_from_state_dict(named: Vec<(String, Tensor)>, path: &Path) -> Result<Model> {
    let named: Vec<(String, Tensor)> = named
        .into_iter()
        .filter(|(name, _)| !is_legacy_statistic(name))
        .map(|(name, tensor)| (name, tensor.detach()))
        .collect();

    let spec = spec_for(&named);
    let style = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "style".to_string());
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let training = TrainingSummary {
        loss_network: "vgg16".to_string(),
        extra: HashMap::from([(
            "converted_from".to_string(),
            format!("pytorch/examples fast_neural_style: {file_name}"),
        )]),
        ..TrainingSummary::default()
    };
    let meta = ModelMeta {
        spec,
        styles: vec![style],
        training: Some(training),
    };
    let mut model = Model::new(meta, Device::Cpu)?;
    model.set_variables(path, named)?;
    Ok(model)
}

fn is_legacy_statistic(name: &str) -> bool {
    LEGACY_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// `johnson-half` when conv1 has its 16 channels, `johnson` otherwise (whose strict variable
/// check then reports anything that does not fit).
fn spec_for(named: &[(String, Tensor)]) -> NetSpec {
    let half = NetSpec::johnson_half();
    let conv1_width = named
        .iter()
        .find(|(name, _)| name == "conv1.conv2d.weight")
        .map(|(_, tensor)| tensor.size()[0]);
    if conv1_width == Some(half.down_channels[0]) {
        half
    } else {
        NetSpec::johnson()
    }
}

/// Every tensor of a `torch.save`d state dict (or of the one inside a training checkpoint), on
/// the CPU, in the file's order: zip files through [`torch_zip`], older ones through
/// [`torch_legacy`].
pub fn read_torch_save(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(4).read_to_end(&mut head))
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if torch_legacy::is_zip(&head) {
        torch_zip::read_torch_zip(path)
    } else {
        torch_legacy::read_torch_legacy(path)
    }
}

/// Like [`read_torch_save`], from a file's contents; `path` names it in errors.
pub fn parse_torch_save(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    if torch_legacy::is_zip(bytes) {
        torch_zip::parse_torch_zip(bytes, path)
    } else {
        torch_legacy::parse_torch_legacy(bytes, path)
    }
}
