//! Converters from other projects' model formats to Atelier model files.

pub mod onnx;
pub mod pth;
pub mod torch_legacy;
pub mod torch_zip;
