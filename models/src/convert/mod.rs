//! Converters from other projects' model formats to Atelier model files.

pub mod onnx;
mod pickle;
pub mod pth;
mod state_dict;
pub mod torch_legacy;
pub mod torch_zip;

use std::path::Path;

use crate::error::{Error, Result};
use crate::file::Model;

/// Imports another project's network, picking the importer by the file's extension: `.onnx`
/// is a Magenta-family multi-style network, `.pth`, `.model` and `.pt` a pytorch/examples
/// `fast_neural_style` state dict (whose reader then tells the zip and legacy formats apart
/// by their first bytes).
pub fn import(path: &Path) -> Result<Model> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "onnx" => onnx::import_magenta_onnx(path),
        "pth" | "model" | "pt" => pth::import_pytorch_examples(path),
        _ => Err(Error::Convert {
            path: path.to_path_buf(),
            reason: "unknown input format (expected .pth, .model or .onnx)".to_string(),
        }),
    }
}
