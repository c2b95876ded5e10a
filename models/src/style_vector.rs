//! The style-vector file: a style picture's vector saved for reuse, so the predictor runs once
//! per painting, not once per use (Ghiasi et al. 2017's style embedding; see `predictor`).
//!
//! A safetensors file with one f32 tensor `style_vector` (`[dim]`) and `__metadata__`:
//! `format` = "atelier-style-vector", `format_version`, `dim` (the length, repeated so a reader
//! can check it) and `source` (what the vector was computed from, e.g. the picture's file name).

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::file::{save_safetensors, view_to_tensor};

pub const STYLE_VECTOR_FORMAT: &str = "atelier-style-vector";
pub const STYLE_VECTOR_FORMAT_VERSION: u32 = 1;
/// The name of the file's one tensor.
pub const TENSOR_NAME: &str = "style_vector";

/// A style vector and where it came from.
#[derive(Debug)]
pub struct StyleVector {
    /// `[dim]` f32 on the CPU.
    pub vector: Tensor,
    pub source: String,
}

impl StyleVector {
    /// `vector` (`[dim]` or `[1, dim]`, any device and float kind) as a CPU f32 vector.
    pub fn new(vector: &Tensor, source: &str) -> Result<Self> {
        let vector = vector
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1);
        if vector.numel() == 0 {
            return Err(Error::InvalidStyle("a style vector needs values".into()));
        }
        Ok(Self {
            vector,
            source: source.to_string(),
        })
    }

    pub fn dim(&self) -> usize {
        self.vector.numel()
    }

    /// Writes the file atomically (temporary sibling, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut header = HashMap::new();
        header.insert("format".to_string(), STYLE_VECTOR_FORMAT.to_string());
        header.insert(
            "format_version".to_string(),
            STYLE_VECTOR_FORMAT_VERSION.to_string(),
        );
        header.insert("dim".to_string(), self.dim().to_string());
        header.insert("source".to_string(), self.source.clone());
        save_safetensors(
            path,
            &[(TENSOR_NAME.to_string(), self.vector.shallow_clone())],
            &header,
        )
    }

    /// Reads and checks a style-vector file: format, version, the one tensor, its length
    /// against the header and against `expected_dim` (what the network takes), finite values.
    pub fn load(path: &Path, expected_dim: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, expected_dim)
    }

    /// Same as `load`, from the file's contents; `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, expected_dim: usize) -> Result<Self> {
        let invalid = |reason: String| Error::NotAStyleVector {
            path: path.to_path_buf(),
            reason,
        };
        let header = style_vector_header(bytes).ok_or_else(|| {
            invalid(format!(
                "not a safetensors file with format `{STYLE_VECTOR_FORMAT}`"
            ))
        })?;
        let get = |key: &str| {
            header
                .get(key)
                .ok_or_else(|| invalid(format!("the header has no `{key}`")))
        };
        let version = get("format_version")?;
        if version.parse::<u32>().ok() != Some(STYLE_VECTOR_FORMAT_VERSION) {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version.clone(),
                supported: STYLE_VECTOR_FORMAT_VERSION,
            });
        }
        let dim: usize = get("dim")?
            .parse()
            .map_err(|_| invalid("`dim` is not a number".into()))?;
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| invalid(format!("not a safetensors file ({e})")))?;
        let names = tensors.names();
        if names.len() != 1 || names[0] != TENSOR_NAME {
            return Err(invalid(format!(
                "it must hold exactly one tensor `{TENSOR_NAME}`, it holds {names:?}"
            )));
        }
        let view = tensors
            .tensor(TENSOR_NAME)
            .map_err(|e| invalid(e.to_string()))?;
        if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 1 {
            return Err(invalid(format!(
                "`{TENSOR_NAME}` must be a 1-d f32 tensor, it is {:?} of shape {:?}",
                view.dtype(),
                view.shape()
            )));
        }
        let length = view.shape()[0];
        if length != dim {
            return Err(invalid(format!(
                "`{TENSOR_NAME}` has {length} values, the header says {dim}"
            )));
        }
        if length != expected_dim {
            return Err(invalid(format!(
                "it has {length} values, the network takes {expected_dim}"
            )));
        }
        let vector = view_to_tensor(path, &view)?;
        let finite = vector.isfinite().all().int64_value(&[]) != 0;
        if !finite {
            return Err(invalid("it holds values that are not finite".into()));
        }
        let source = header.get("source").cloned().unwrap_or_default();
        Ok(Self { vector, source })
    }
}

/// Whether `bytes` are a style-vector file (by its header's `format`; a picture is not), for
/// callers that accept either a style picture or a vector file.
pub fn is_style_vector(bytes: &[u8]) -> bool {
    style_vector_header(bytes).is_some()
}

/// The metadata header, if `bytes` are a safetensors file of the style-vector format.
fn style_vector_header(bytes: &[u8]) -> Option<HashMap<String, String>> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let header = metadata.metadata().clone()?;
    (header.get("format").map(String::as_str) == Some(STYLE_VECTOR_FORMAT)).then_some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(dim: i64) -> Tensor {
        Tensor::arange(dim, (Kind::Float, Device::Cpu)) * 0.25 - 3.0
    }

    #[test]
    fn round_trips_and_checks_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("painting.style");
        StyleVector::new(&vector(100).unsqueeze(0), "painting.jpg")
            .unwrap()
            .save(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(is_style_vector(&bytes));
        let loaded = StyleVector::load(&path, 100).unwrap();
        assert!(loaded.vector.equal(&vector(100)));
        assert_eq!(loaded.source, "painting.jpg");

        let message = StyleVector::load(&path, 64).unwrap_err().to_string();
        assert!(
            message.contains("has 100 values, the network takes 64"),
            "{message}"
        );
    }

    #[test]
    fn other_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        // A safetensors file of another format.
        let other = dir.path().join("model.safetensors");
        let mut header = HashMap::new();
        header.insert("format".to_string(), "atelier-model".to_string());
        save_safetensors(&other, &[("x".into(), vector(100))], &header).unwrap();
        assert!(!is_style_vector(&std::fs::read(&other).unwrap()));
        let message = StyleVector::load(&other, 100).unwrap_err().to_string();
        assert!(message.contains("not an atelier style vector"), "{message}");

        // Right format, header and tensor lengths disagree.
        let lying = dir.path().join("lying.style");
        header.insert("format".to_string(), STYLE_VECTOR_FORMAT.to_string());
        header.insert("format_version".to_string(), "1".to_string());
        header.insert("dim".to_string(), "100".to_string());
        save_safetensors(&lying, &[(TENSOR_NAME.into(), vector(99))], &header).unwrap();
        let message = StyleVector::load(&lying, 100).unwrap_err().to_string();
        assert!(
            message.contains("has 99 values, the header says 100"),
            "{message}"
        );

        // Not safetensors at all.
        let text = dir.path().join("notes.style");
        std::fs::write(&text, b"not a vector").unwrap();
        assert!(!is_style_vector(b"not a vector"));
        let message = StyleVector::load(&text, 100).unwrap_err().to_string();
        assert!(message.contains("not an atelier style vector"), "{message}");
        assert_eq!(message.lines().count(), 1);
    }
}
