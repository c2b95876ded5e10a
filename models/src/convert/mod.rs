//! Converters from other projects' model formats to Atelier model files.
//!
//! `import` picks the converter by the file: pytorch/examples state dicts (`.pth`, `.model`,
//! `.pt`), and ONNX files (`.onnx`) by their graph's inputs: Magenta's 26-style network, the
//! arbitrary style predictor or the arbitrary transformer.

pub mod arbitrary;
pub mod onnx;
mod pickle;
pub mod pth;
pub(crate) mod qdq;
mod state_dict;
pub mod torch_legacy;
pub mod torch_zip;

use std::path::Path;

use crate::error::{Error, Result};
use crate::file::{Model, Quantized};
use crate::predictor::StylePredictor;

/// What a converter read.
// One value per conversion, moved once: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Imported {
    /// A style transformer, with the int8 forms of the variables its source stored quantized
    /// (empty for float sources).
    Transformer { model: Model, quantized: Quantized },
    /// Magenta's style predictor, with the int8 forms of its weights.
    Predictor {
        predictor: StylePredictor,
        quantized: Quantized,
    },
}

impl Imported {
    /// Writes the Atelier file atomically (a model file or a predictor file), int8 variables
    /// stored as int8 with their scales.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            Imported::Transformer { model, quantized } => model.save_quantized(path, quantized),
            Imported::Predictor {
                predictor,
                quantized,
            } => predictor.save(path, quantized),
        }
    }

    /// One line for the user: what was converted.
    pub fn describe(&self) -> String {
        let int8 = |quantized: &Quantized, total: usize| {
            if quantized.is_empty() {
                String::new()
            } else {
                format!(", {} of {total} stored as int8", quantized.len())
            }
        };
        match self {
            Imported::Transformer { model, quantized } => {
                let spec = &model.meta.spec;
                let variables = spec.variables().len();
                let styles = match spec.style_vector_dim() {
                    Some(dim) => format!("any style, from {dim}-d style vectors"),
                    None if spec.n_styles == 1 => "1 style".to_string(),
                    None => format!("{} styles", spec.n_styles),
                };
                format!(
                    "style network ({styles}, {variables} variables{})",
                    int8(quantized, variables)
                )
            }
            Imported::Predictor {
                predictor,
                quantized,
            } => {
                let variables = predictor.spec().variables().len();
                format!(
                    "style predictor ({}-d style vectors, {variables} variables{})",
                    predictor.spec().style_dim,
                    int8(quantized, variables)
                )
            }
        }
    }
}

/// Reads another project's network, choosing the converter by the file's type (and, for ONNX,
/// by its graph). Anything unknown is a one-line error saying what was expected.
pub fn import(path: &Path) -> Result<Imported> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    import_bytes(&bytes, path)
}

/// Like [`import`], from a file's contents; `path` names the file type and the source in
/// messages.
pub fn import_bytes(bytes: &[u8], path: &Path) -> Result<Imported> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pth" | "model" | "pt" => Ok(Imported::Transformer {
            model: pth::pytorch_examples_from_bytes(bytes, path)?,
            quantized: Quantized::new(),
        }),
        "onnx" => import_onnx(bytes, path),
        _ => Err(Error::Convert {
            path: path.to_path_buf(),
            reason: "unknown input format (expected .pth, .model, .pt or .onnx)".into(),
        }),
    }
}

fn import_onnx(bytes: &[u8], path: &Path) -> Result<Imported> {
    let model = qdq::decode_model(bytes, path)?;
    let inputs = model
        .graph
        .as_ref()
        .map(qdq::real_inputs)
        .unwrap_or_default();
    let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["image", "style_weights"] => Ok(Imported::Transformer {
            model: onnx::import_magenta_model(path, model)?,
            quantized: Quantized::new(),
        }),
        names if names == arbitrary::TRANSFORMER_INPUTS => {
            let (model, quantized) = arbitrary::import_transformer_model(path, model)?;
            Ok(Imported::Transformer { model, quantized })
        }
        [arbitrary::PREDICTOR_INPUT] => {
            let (predictor, quantized) = arbitrary::import_predictor_model(path, model)?;
            Ok(Imported::Predictor {
                predictor,
                quantized,
            })
        }
        _ => Err(Error::Convert {
            path: path.to_path_buf(),
            reason: format!(
                "unknown graph: inputs are {inputs:?}; expected Magenta's 26-style network [\"image\", \"style_weights\"], the arbitrary style predictor [\"{}\"] or the arbitrary transformer {:?}",
                arbitrary::PREDICTOR_INPUT,
                arbitrary::TRANSFORMER_INPUTS
            ),
        }),
    }
}
