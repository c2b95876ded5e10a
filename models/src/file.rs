//! The model file: one `.safetensors` file whose header metadata describes the network, so a
//! trained style travels as a single self-describing file.
//!
//! `__metadata__` keys: `format` = "atelier-model", `format_version`, `spec` (NetSpec as JSON),
//! `styles` (JSON array of names, in conditional-norm row order; empty for a network whose norms
//! come from a style vector) and `training` (JSON, optional).
//! Tensors: exactly `NetSpec::variables()`, each f32, or int8 with one f32 scale per output
//! channel (see `Int8Weight`): an int8 tensor `name` beside an f32 tensor `name.qscale`
//! (`[out_channels]`), dequantized at load (`w = q · scale[oc]`). Quantized storage keeps
//! networks imported from int8 sources a quarter of their f32 size; f32-only files are
//! unchanged, so every older file still loads.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::spec::NetSpec;
use crate::transformer::TransformerNet;

pub const FORMAT_NAME: &str = "atelier-model";
pub const FORMAT_VERSION: u32 = 1;

/// Suffix of the tensor that holds an int8 tensor's per-channel scales.
pub const SCALE_SUFFIX: &str = ".qscale";

/// A weight stored as int8 with one f32 scale per output channel (dimension 0), symmetric:
/// `w[oc, ...] = q[oc, ...] · scales[oc]`. What quantized sources (ONNX QDQ graphs) hold, kept
/// as they are so a converted file reproduces the source's values exactly.
#[derive(Debug)]
pub struct Int8Weight {
    /// `Kind::Int8`, on the CPU.
    pub values: Tensor,
    /// `[out_channels]` f32, on the CPU.
    pub scales: Tensor,
}

impl Int8Weight {
    /// The f32 weight, `q · scale[oc]` (one f32 product per value: exact to the last bit).
    pub fn dequantize(&self) -> Tensor {
        let mut shape = vec![1i64; self.values.dim()];
        if let Some(first) = shape.first_mut() {
            *first = -1;
        }
        self.values.to_kind(Kind::Float) * self.scales.to_kind(Kind::Float).view(shape.as_slice())
    }
}

/// The int8 forms of some of a network's variables, by variable name.
pub type Quantized = BTreeMap<String, Int8Weight>;

/// How a model was trained, for `atelier inspect` and reproducibility.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub style_images: Vec<String>,
    pub loss_network: String,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub steps: u64,
    pub batch_size: usize,
    pub image_size: i64,
    pub dataset_size: usize,
    pub date: String,
    pub atelier_version: String,
    /// Anything else worth keeping (learning rate, seed, source file of a conversion, ...).
    #[serde(
        default,
        skip_serializing_if = "HashMap::is_empty",
        serialize_with = "sorted_map"
    )]
    pub extra: HashMap<String, String>,
}

/// A map written in key order, so equal maps make equal files.
fn sorted_map<S: serde::Serializer>(
    map: &HashMap<String, String>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().collect::<BTreeMap<_, _>>())
}

/// The header of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    pub spec: NetSpec,
    pub styles: Vec<String>,
    pub training: Option<TrainingSummary>,
}

/// A loaded model: its header, its variables and the network over them.
#[derive(Debug)]
pub struct Model {
    pub meta: ModelMeta,
    pub vars: nn::VarStore,
    pub net: TransformerNet,
}

impl Model {
    /// A freshly initialised network (for training).
    pub fn new(meta: ModelMeta, device: Device) -> Result<Self> {
        if meta.styles.len() != meta.spec.n_styles {
            return Err(Error::InvalidSpec(format!(
                "{} style names for a network of {} styles",
                meta.styles.len(),
                meta.spec.n_styles
            )));
        }
        let vars = nn::VarStore::new(device);
        let net = TransformerNet::new(&vars.root(), &meta.spec)?;
        Ok(Self { meta, vars, net })
    }

    /// Loads and checks a model file strictly: format and version, then exactly the tensors the
    /// spec names, with their shapes.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, device)
    }

    /// Same as `load`, from a file's contents (the embedded built-in model); `path` only names
    /// the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, device: Device) -> Result<Self> {
        let meta = parse_meta(path, bytes)?;
        let named = read_dequantized(path, bytes)?;
        let mut model = Self::new(meta, device)?;
        model.set_variables(path, named)?;
        Ok(model)
    }

    /// Copies `named` tensors into the variables, requiring exactly the spec's names and shapes.
    /// `source` names where they came from, for error messages.
    pub fn set_variables(&mut self, source: &Path, named: Vec<(String, Tensor)>) -> Result<()> {
        let mut given: HashMap<String, Tensor> = named.into_iter().collect();
        let expected = self.meta.spec.variables();
        let mut variables = self.vars.variables();
        for (name, shape) in &expected {
            let tensor = given.remove(name).ok_or_else(|| Error::MissingTensor {
                path: source.to_path_buf(),
                name: name.clone(),
            })?;
            if &tensor.size() != shape {
                return Err(Error::ShapeMismatch {
                    path: source.to_path_buf(),
                    name: name.clone(),
                    expected: shape.clone(),
                    found: tensor.size(),
                });
            }
            let var = variables.get_mut(name).ok_or_else(|| {
                Error::InvalidSpec(format!("the network has no variable `{name}`"))
            })?;
            tch::no_grad(|| var.copy_(&tensor));
        }
        if let Some(name) = sorted_keys(&given).into_iter().next() {
            return Err(Error::UnexpectedTensor {
                path: source.to_path_buf(),
                name,
            });
        }
        Ok(())
    }

    /// Writes the model atomically: a temporary file beside `path`, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_quantized(path, &Quantized::new())
    }

    /// Like `save`, storing the variables named in `quantized` in their int8 form. Each must
    /// dequantize to the variable's current value exactly, so the file loads to the same
    /// network.
    pub fn save_quantized(&self, path: &Path, quantized: &Quantized) -> Result<()> {
        let variables = self.vars.variables();
        let mut tensors = Vec::new();
        for (name, _) in self.meta.spec.variables() {
            let var = variables.get(&name).ok_or_else(|| {
                Error::InvalidSpec(format!("the network has no variable `{name}`"))
            })?;
            tensors.push((name, var.shallow_clone()));
        }
        save_safetensors_quantized(path, &tensors, quantized, &self.meta_header()?)
    }

    fn meta_header(&self) -> Result<HashMap<String, String>> {
        let json = |v: serde_json::Result<String>| v.map_err(|e| Error::InvalidSpec(e.to_string()));
        let mut header = HashMap::new();
        header.insert("format".to_string(), FORMAT_NAME.to_string());
        header.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        header.insert(
            "spec".to_string(),
            json(serde_json::to_string(&self.meta.spec))?,
        );
        header.insert(
            "styles".to_string(),
            json(serde_json::to_string(&self.meta.styles))?,
        );
        if let Some(training) = &self.meta.training {
            header.insert(
                "training".to_string(),
                json(serde_json::to_string(training))?,
            );
        }
        Ok(header)
    }
}

/// The `format` a safetensors file's header names (`atelier-model`, `atelier-style-predictor`),
/// if it is one with such a header.
pub fn header_format(bytes: &[u8]) -> Option<String> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    metadata.metadata().as_ref()?.get("format").cloned()
}

/// Reads only the header of a model file (for `atelier inspect` and `atelier styles`).
pub fn read_meta(path: &Path) -> Result<ModelMeta> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_meta(path, &bytes)
}

fn parse_meta(path: &Path, bytes: &[u8]) -> Result<ModelMeta> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| not_a_model(path, safetensors_error(&e, bytes.len())))?;
    let header = metadata
        .metadata()
        .as_ref()
        .ok_or_else(|| not_a_model(path, "the safetensors file has no metadata header"))?;
    let get = |key: &str| {
        header
            .get(key)
            .ok_or_else(|| not_a_model(path, format!("the header has no `{key}`")))
    };
    if get("format")? != FORMAT_NAME {
        return Err(not_a_model(path, format!("format is not `{FORMAT_NAME}`")));
    }
    let version = get("format_version")?;
    if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version.clone(),
            supported: FORMAT_VERSION,
        });
    }
    let spec: NetSpec = serde_json::from_str(get("spec")?)
        .map_err(|e| not_a_model(path, format!("bad `spec`: {e}")))?;
    let styles: Vec<String> = serde_json::from_str(get("styles")?)
        .map_err(|e| not_a_model(path, format!("bad `styles`: {e}")))?;
    let training = match header.get("training") {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| not_a_model(path, format!("bad `training`: {e}")))?,
        ),
        None => None,
    };
    if styles.len() != spec.n_styles {
        return Err(not_a_model(
            path,
            format!("{} style names for {} styles", styles.len(), spec.n_styles),
        ));
    }
    Ok(ModelMeta {
        spec,
        styles,
        training,
    })
}

fn not_a_model(path: &Path, reason: impl ToString) -> Error {
    Error::NotAModel {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn sorted_keys<V>(map: &HashMap<String, V>) -> Vec<String> {
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort();
    keys
}

/// A safetensors tensor as a CPU f32 tensor (f16/bf16/f64 files are widened or narrowed).
pub fn view_to_tensor(path: &Path, view: &safetensors::tensor::TensorView) -> Result<Tensor> {
    use safetensors::Dtype;
    let kind = match view.dtype() {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I64 => Kind::Int64,
        other => {
            return Err(not_a_model(
                path,
                format!("unsupported tensor dtype {other:?}"),
            ))
        }
    };
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)?;
    Ok(if matches!(kind, Kind::Uint8 | Kind::Int8 | Kind::Int64) {
        tensor
    } else {
        tensor.to_kind(Kind::Float)
    })
}

/// What is wrong with a file safetensors refuses, in words. Its reader checks the header
/// against the file before anything is allocated: each tensor's byte range must follow the
/// previous one, match its shape and dtype, and end where the file does.
pub fn safetensors_error(error: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match error {
        E::HeaderTooSmall | E::InvalidHeaderLength => format!(
            "not a safetensors file: its header length does not fit in its {file_len} bytes \
             (truncated or damaged?)"
        ),
        E::HeaderTooLarge => "not a safetensors file: it declares a header over 100 MB".into(),
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization => {
            "not a safetensors file: its header is not the expected JSON".into()
        }
        E::InvalidOffset(name) => format!(
            "its header gives tensor `{name}` a byte range that does not follow the previous \
             tensor's"
        ),
        E::TensorInvalidInfo | E::ValidationOverflow => {
            "its header declares a tensor whose shape does not match its byte range".into()
        }
        E::MetadataIncompleteBuffer => format!(
            "its header declares tensor data that does not end where the file's {file_len} \
             bytes do (truncated, or a lying header)"
        ),
        other => format!("not a safetensors file ({other:?})"),
    }
}

/// Reads every tensor of a safetensors file (any producer) as CPU tensors, sorted by name.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_safetensors(path, &bytes)
}

/// Like [`read_safetensors`], from a file's contents; `path` only names it in errors.
pub fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Convert {
        path: path.to_path_buf(),
        reason: safetensors_error(&e, bytes.len()),
    })?;
    let mut out = Vec::new();
    for (name, view) in tensors.tensors() {
        out.push((name, view_to_tensor(path, &view)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every tensor of a model-like safetensors file (`bytes`, read from `path`) as CPU tensors,
/// int8 tensors dequantized with their `.qscale` companions (which do not appear in the
/// result). An int8 tensor without its scales, or scales that do not fit, is an error.
pub fn read_dequantized(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| not_a_model(path, safetensors_error(&e, bytes.len())))?;
    let mut named: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        named.insert(name, view_to_tensor(path, &view)?);
    }
    let scale_names: Vec<String> = named
        .keys()
        .filter(|name| name.ends_with(SCALE_SUFFIX))
        .cloned()
        .collect();
    for scale_name in scale_names {
        let Some(scales) = named.remove(&scale_name) else {
            continue;
        };
        let name = scale_name
            .strip_suffix(SCALE_SUFFIX)
            .unwrap_or(&scale_name)
            .to_string();
        let values = named.remove(&name).ok_or_else(|| {
            not_a_model(path, format!("`{scale_name}` scales no tensor `{name}`"))
        })?;
        let channels = values.size().first().copied().unwrap_or(0);
        if values.kind() != Kind::Int8 || scales.kind() != Kind::Float {
            return Err(not_a_model(
                path,
                format!("`{name}` must be int8 and `{scale_name}` f32"),
            ));
        }
        if scales.size() != [channels] {
            return Err(not_a_model(
                path,
                format!(
                    "`{scale_name}` has shape {:?}, expected [{channels}] (one scale per output channel of `{name}`)",
                    scales.size()
                ),
            ));
        }
        let weight = Int8Weight { values, scales };
        named.insert(name, weight.dequantize());
    }
    if let Some((name, _)) = named.iter().find(|(_, t)| t.kind() == Kind::Int8) {
        return Err(not_a_model(
            path,
            format!("int8 tensor `{name}` has no scales `{name}{SCALE_SUFFIX}`"),
        ));
    }
    Ok(named.into_iter().collect())
}

/// A tensor's bytes as safetensors stores them.
struct RawView {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl RawView {
    fn f32(tensor: &Tensor) -> Result<Self> {
        let flat = tensor
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view([-1]);
        let values = Vec::<f32>::try_from(&flat)?;
        Ok(Self {
            dtype: safetensors::Dtype::F32,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }

    fn int8(tensor: &Tensor) -> Result<Self> {
        let flat = tensor.to_device(Device::Cpu).contiguous().view([-1]);
        let values = Vec::<i8>::try_from(&flat)?;
        Ok(Self {
            dtype: safetensors::Dtype::I8,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            bytes: values.iter().map(|&v| v as u8).collect(),
        })
    }
}

impl safetensors::View for &RawView {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes tensors (as f32) and a metadata header to `path` atomically.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    header: &HashMap<String, String>,
) -> Result<()> {
    save_safetensors_quantized(path, tensors, &Quantized::new(), header)
}

/// Like `save_safetensors`, storing the tensors named in `quantized` as int8 with their scales
/// (`name` and `name.qscale`). Each int8 form must dequantize exactly to the tensor given.
pub fn save_safetensors_quantized(
    path: &Path,
    tensors: &[(String, Tensor)],
    quantized: &Quantized,
    header: &HashMap<String, String>,
) -> Result<()> {
    if let Some(name) = quantized
        .keys()
        .find(|name| !tensors.iter().any(|(n, _)| n == *name))
    {
        return Err(Error::InvalidSpec(format!(
            "int8 values for `{name}`, which is not a tensor of the file"
        )));
    }
    let mut views = Vec::new();
    for (name, tensor) in tensors {
        match quantized.get(name) {
            Some(weight) => {
                let exact = tensor.size() == weight.values.size()
                    && weight
                        .dequantize()
                        .equal(&tensor.detach().to_device(Device::Cpu).to_kind(Kind::Float));
                if !exact {
                    return Err(Error::InvalidSpec(format!(
                        "the int8 values of `{name}` do not dequantize to the tensor"
                    )));
                }
                views.push((name.clone(), RawView::int8(&weight.values)?));
                views.push((
                    format!("{name}{SCALE_SUFFIX}"),
                    RawView::f32(&weight.scales)?,
                ));
            }
            None => views.push((name.clone(), RawView::f32(tensor)?)),
        }
    }
    let data = safetensors::serialize(
        views.iter().map(|(n, v)| (n.as_str(), v)),
        &Some(header.clone()),
    )
    .map_err(|e| Error::InvalidSpec(format!("cannot serialise tensors: {e}")))?;
    write_atomically(path, &with_sorted_header(data)?)
}

/// `safetensors::serialize` writes its JSON header from hash maps, in an order that changes
/// from process to process; the same header with its keys sorted makes identical contents
/// byte-identical files. Data offsets count from the end of the header, so they stand.
fn with_sorted_header(data: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |reason: &str| Error::InvalidSpec(format!("cannot serialise tensors: {reason}"));
    let length = data
        .get(..8)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad("no header"))? as usize;
    let end = 8usize.saturating_add(length);
    let header = data.get(8..end).ok_or_else(|| bad("a short header"))?;
    let mut value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    value.sort_all_objects();
    let mut sorted = serde_json::to_vec(&value).map_err(|e| bad(&e.to_string()))?;
    // safetensors pads its header with spaces to a multiple of 8 bytes, aligning the data.
    sorted.resize(sorted.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + sorted.len() + data.len() - end);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&sorted);
    out.extend_from_slice(&data[end..]);
    Ok(out)
}

/// Writes `data` to a temporary file beside `path`, fsyncs it and renames it into place, so a
/// crash never leaves a half-written file under the final name.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temporary_sibling(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// `dir/.name.tmp-PID`: hidden, in the same folder (so the rename is atomic), per process.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The check before a command that writes `path` starts: the file must not exist unless
/// `force`, and its folder must take a new file. The one "already exists (use --force)" test,
/// shared by `train`, `convert` and `sheet`.
pub fn check_new_output(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::OutputExists {
            path: path.to_path_buf(),
        });
    }
    check_writable(path)
}

/// Creates and removes a temporary sibling of `path`: proves its folder exists and takes files,
/// before hours of work end in a failed write.
pub fn check_writable(path: &Path) -> Result<()> {
    let probe = temporary_sibling(path);
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(Error::Write {
            path: path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            source,
        }),
    }
}
