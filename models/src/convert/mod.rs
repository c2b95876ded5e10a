//! Converters from other projects' model formats to Atelier model files.

pub mod onnx;
mod pickle;
pub mod pth;
mod state_dict;
pub mod torch_legacy;
pub mod torch_zip;
