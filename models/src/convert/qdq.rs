//! Reading ONNX graphs in QDQ form (quantized with QuantizeLinear/DequantizeLinear pairs, as
//! tf2onnx writes TFLite int8 models) as the float networks they approximate.
//!
//! Weights are int8 initializers behind a DequantizeLinear (symmetric, one scale per output
//! channel: `w = q · scale[oc]`), biases int32 ones (scale `in_scale · w_scale[oc]`, as
//! measured on Magenta's files); both become f32 constants, `(q - zero_point) · scale` with
//! the node's own scales. Activations are quantized after every op and dequantized before the
//! next: those pairs are dropped, so the network is read as float32 throughout (what ONNX
//! Runtime computes on the original graph differs from that by int8 rounding only). The compute
//! nodes (everything but the Q/DQ nodes) are left for an importer to check against the
//! architecture it expects.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use tch::{Kind, Tensor};

use super::onnx::proto;
use crate::error::{Error, Result};
use crate::file::Int8Weight;

/// An initializer's values in their stored type.
#[derive(Debug)]
enum Values {
    F32(Vec<f32>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I8(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    /// Exact integers as i64 (int8, int32, int64 initializers).
    fn integers(&self) -> Option<Vec<i64>> {
        match self {
            Values::I8(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            Values::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            Values::I64(v) => Some(v.clone()),
            Values::F32(_) => None,
        }
    }
}

#[derive(Debug)]
struct Constant {
    dims: Vec<i64>,
    values: Values,
}

/// A decoded ONNX model file, for the importers that dispatch on its graph.
pub(crate) fn read_model(path: &Path) -> Result<proto::ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_model(&bytes, path)
}

/// A decoded ONNX model from a file's contents; `path` names it in errors.
pub(crate) fn decode_model(bytes: &[u8], path: &Path) -> Result<proto::ModelProto> {
    proto::ModelProto::decode(bytes).map_err(|e| Error::Convert {
        path: path.to_path_buf(),
        reason: format!("not an ONNX model: {e}"),
    })
}

/// The graph's real inputs (those that are not initializers), in order.
pub(crate) fn real_inputs(graph: &proto::GraphProto) -> Vec<String> {
    let initializers: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    graph
        .input
        .iter()
        .filter_map(|i| i.name.clone())
        .filter(|n| !initializers.contains(&n.as_str()))
        .collect()
}

/// A QDQ graph read as float: its compute nodes, and its constants dequantized on request.
pub(crate) struct QdqGraph {
    nodes: Vec<proto::NodeProto>,
    constants: HashMap<String, Constant>,
    /// Node index producing each value.
    producers: HashMap<String, usize>,
    /// Indices of the nodes reading each value.
    consumers: HashMap<String, Vec<usize>>,
    pub inputs: Vec<String>,
}

impl QdqGraph {
    /// Reads the initializers and checks that every Q/DQ node is one of the two kinds this
    /// reader drops or folds: a weight DequantizeLinear of an initializer, or an activation
    /// QuantizeLinear → (Transpose/Reshape) → DequantizeLinear chain.
    pub fn new(graph: proto::GraphProto) -> std::result::Result<Self, String> {
        let inputs = real_inputs(&graph);
        let mut constants = HashMap::new();
        for tensor in &graph.initializer {
            let name = tensor.name.clone().unwrap_or_default();
            let constant =
                constant_from_proto(tensor).map_err(|e| format!("initializer `{name}`: {e}"))?;
            constants.insert(name, constant);
        }
        let mut producers = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, node) in graph.node.iter().enumerate() {
            for output in &node.output {
                producers.insert(output.clone(), index);
            }
            for input in &node.input {
                consumers.entry(input.clone()).or_default().push(index);
            }
        }
        let qdq = Self {
            nodes: graph.node,
            constants,
            producers,
            consumers,
            inputs,
        };
        qdq.check_quantization()?;
        Ok(qdq)
    }

    fn producer(&self, value: &str) -> Option<&proto::NodeProto> {
        self.producers.get(value).map(|&i| &self.nodes[i])
    }

    fn check_quantization(&self) -> std::result::Result<(), String> {
        for node in &self.nodes {
            let first = node.input.first().map(String::as_str).unwrap_or("");
            match op(node) {
                "QuantizeLinear" if self.constants.contains_key(first) => {
                    return Err(format!(
                        "unknown graph: QuantizeLinear of the constant `{first}`"
                    ));
                }
                "DequantizeLinear" if !self.constants.contains_key(first) => {
                    // An activation: quantized just before, maybe moved by a layout op.
                    let mut source = self.producer(first);
                    while let Some(n) = source.filter(|n| matches!(op(n), "Transpose" | "Reshape"))
                    {
                        source = n.input.first().and_then(|i| self.producer(i));
                    }
                    if source.map(op) != Some("QuantizeLinear") {
                        return Err(format!(
                            "unknown graph: DequantizeLinear of `{first}`, which is not quantized"
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The nodes that compute (not QuantizeLinear/DequantizeLinear), in graph order.
    pub fn compute_nodes(&self) -> impl Iterator<Item = &proto::NodeProto> {
        self.nodes
            .iter()
            .filter(|n| !matches!(op(n), "QuantizeLinear" | "DequantizeLinear"))
    }

    /// The compute nodes that read `value` once activation quantization is dropped: its
    /// readers, with QuantizeLinear/DequantizeLinear nodes looked through.
    pub fn float_consumers(&self, value: &str) -> Vec<&proto::NodeProto> {
        let mut found = Vec::new();
        let mut pending = vec![value.to_string()];
        while let Some(value) = pending.pop() {
            for &index in self.consumers.get(&value).into_iter().flatten() {
                let node = &self.nodes[index];
                if matches!(op(node), "QuantizeLinear" | "DequantizeLinear") {
                    pending.extend(node.output.iter().cloned());
                } else {
                    found.push(node);
                }
            }
        }
        found
    }

    /// How many compute nodes of each op type the graph has.
    pub fn op_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for node in self.compute_nodes() {
            *counts.entry(op(node).to_string()).or_default() += 1;
        }
        counts
    }

    /// Whether `value` is a constant: an initializer, or a DequantizeLinear of one.
    pub fn is_constant(&self, value: &str) -> bool {
        self.constants.contains_key(value) || self.weight_dequantize(value).is_some()
    }

    /// The DequantizeLinear node that makes `value` from an initializer, if it is one.
    fn weight_dequantize(&self, value: &str) -> Option<&proto::NodeProto> {
        self.producer(value).filter(|n| {
            op(n) == "DequantizeLinear"
                && n.input
                    .first()
                    .is_some_and(|i| self.constants.contains_key(i))
        })
    }

    /// The initializer behind a constant input: itself, or what its DequantizeLinear reads.
    pub fn source_name<'a>(&'a self, value: &'a str) -> &'a str {
        match self.weight_dequantize(value) {
            Some(node) => node.input[0].as_str(),
            None => value,
        }
    }

    /// The f32 value of a constant input (dequantized with its node's scales and zero points).
    pub fn constant(&self, value: &str) -> std::result::Result<Tensor, String> {
        if let Some(node) = self.weight_dequantize(value) {
            let (dims, values) = self.dequantize(node)?;
            return Ok(Tensor::from_slice(&values).view(dims.as_slice()));
        }
        let constant = self
            .constants
            .get(value)
            .ok_or_else(|| format!("unknown graph: `{value}` is not a constant"))?;
        let values: Vec<f32> = match &constant.values {
            Values::F32(v) => v.clone(),
            other => other
                .integers()
                .unwrap_or_default()
                .iter()
                .map(|&x| x as f32)
                .collect(),
        };
        Ok(Tensor::from_slice(&values).view(constant.dims.as_slice()))
    }

    /// The int8 form of a constant input, when it is int8 with zero zero points and one scale
    /// per output channel (axis 0) or one for the whole tensor: what a model file can store.
    pub fn int8_weight(&self, value: &str) -> Option<Int8Weight> {
        let node = self.weight_dequantize(value)?;
        let data = self.constants.get(&node.input[0])?;
        let Values::I8(q) = &data.values else {
            return None;
        };
        // a shape with a zero may declare any number of channels: there are no values to scale
        let channels = *data.dims.first().filter(|_| !q.is_empty())?;
        let scale = self.constants.get(node.input.get(1)?)?;
        let Values::F32(scales) = &scale.values else {
            return None;
        };
        let zero_points_are_zero = match node.input.get(2) {
            None => true,
            Some(name) => self
                .constants
                .get(name)
                .and_then(|z| z.values.integers())
                .is_some_and(|z| z.iter().all(|&v| v == 0)),
        };
        let per_channel = scales.len() as i64 == channels && axis(node) == 0;
        if !zero_points_are_zero || !(per_channel || scales.len() == 1) {
            return None;
        }
        let scales = if per_channel {
            scales.clone()
        } else {
            vec![scales[0]; channels as usize]
        };
        Some(Int8Weight {
            values: Tensor::from_slice(q).view(data.dims.as_slice()),
            scales: Tensor::from_slice(&scales).to_kind(Kind::Float),
        })
    }

    /// `(q - zero_point) · scale` of a DequantizeLinear of an initializer, per `axis` when the
    /// scale is a vector: one f32 product per value, as ONNX Runtime computes it.
    fn dequantize(
        &self,
        node: &proto::NodeProto,
    ) -> std::result::Result<(Vec<i64>, Vec<f32>), String> {
        let get = |index: usize| node.input.get(index).and_then(|n| self.constants.get(n));
        let name = &node.input[0];
        let data = get(0).ok_or_else(|| format!("unknown graph: no initializer `{name}`"))?;
        let q = data
            .values
            .integers()
            .ok_or_else(|| format!("unknown graph: `{name}` is dequantized but not integer"))?;
        let Some(Values::F32(scales)) = get(1).map(|c| &c.values) else {
            return Err(format!("unknown graph: the scale of `{name}` is not float"));
        };
        let zero_points = match get(2) {
            Some(z) => z.values.integers().ok_or_else(|| {
                format!("unknown graph: the zero point of `{name}` is not integer")
            })?,
            None => vec![0],
        };
        // Which scale each value uses: the one scale, or the one of its index along `axis`
        // (`inner` values per step along it).
        let (channels, inner) = match scales.len() {
            0 => return Err(format!("unknown graph: `{name}` has no scale")),
            1 => (1, q.len().max(1)),
            n => {
                let rank = data.dims.len() as i64;
                let axis = axis(node);
                let axis = if axis < 0 { axis + rank } else { axis };
                let Some(axis) = usize::try_from(axis).ok().filter(|&a| a < data.dims.len()) else {
                    return Err(format!(
                        "unknown graph: `{name}` is dequantized along axis {axis} of {rank}"
                    ));
                };
                let inner: i64 = data.dims[axis + 1..].iter().product();
                if data.dims[axis] != n as i64 {
                    return Err(format!(
                        "unknown graph: `{name}` has {n} scales for {} channels",
                        data.dims[axis]
                    ));
                }
                (n, inner.max(1) as usize)
            }
        };
        if zero_points.len() != 1 && zero_points.len() != channels {
            return Err(format!(
                "unknown graph: `{name}` has {} zero points for {channels} scales",
                zero_points.len()
            ));
        }
        let values = q
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner) % channels;
                let zero = zero_points
                    .get(c)
                    .or(zero_points.first())
                    .copied()
                    .unwrap_or(0);
                (v - zero) as f32 * scales[c]
            })
            .collect();
        Ok((data.dims.clone(), values))
    }
}

/// A node's op type.
pub(crate) fn op(node: &proto::NodeProto) -> &str {
    node.op_type.as_deref().unwrap_or("")
}

fn attribute<'a>(node: &'a proto::NodeProto, name: &str) -> Option<&'a proto::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

/// An `ints` attribute, empty when absent.
pub(crate) fn ints<'a>(node: &'a proto::NodeProto, name: &str) -> &'a [i64] {
    attribute(node, name).map_or(&[], |a| a.ints.as_slice())
}

/// An `int` attribute.
pub(crate) fn int(node: &proto::NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).and_then(|a| a.i)
}

/// A `string` attribute.
pub(crate) fn string<'a>(node: &'a proto::NodeProto, name: &str) -> Option<&'a [u8]> {
    attribute(node, name).and_then(|a| a.s.as_deref())
}

/// DequantizeLinear's `axis` (default 1).
fn axis(node: &proto::NodeProto) -> i64 {
    int(node, "axis").unwrap_or(1)
}

/// The element count of an ONNX shape; `None` for a negative dimension or an overflow.
pub(crate) fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |count, &d| {
        count.checked_mul(usize::try_from(d).ok()?)
    })
}

fn constant_from_proto(tensor: &proto::TensorProto) -> std::result::Result<Constant, String> {
    if tensor.data_location == Some(proto::EXTERNAL) {
        return Err("external tensor data is not supported".into());
    }
    let raw = tensor.raw_data.as_deref().filter(|r| !r.is_empty());
    let values = match (tensor.data_type, raw) {
        (Some(proto::FLOAT), Some(raw)) => Values::F32(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        (Some(proto::FLOAT), None) => Values::F32(tensor.float_data.clone()),
        (Some(proto::INT8), Some(raw)) => Values::I8(raw.iter().map(|&b| b as i8).collect()),
        // int8 outside raw_data is stored widened in int32_data.
        (Some(proto::INT8), None) => Values::I8(
            tensor
                .int32_data
                .iter()
                .map(|&v| i8::try_from(v).map_err(|_| format!("int8 value {v} out of range")))
                .collect::<std::result::Result<_, _>>()?,
        ),
        (Some(proto::INT32), Some(raw)) => Values::I32(
            raw.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        (Some(proto::INT32), None) => Values::I32(tensor.int32_data.clone()),
        (Some(proto::INT64), Some(raw)) => Values::I64(
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        (Some(proto::INT64), None) => Values::I64(tensor.int64_data.clone()),
        (other, _) => return Err(format!("data type {other:?} is not supported")),
    };
    if element_count(&tensor.dims) != Some(values.len()) {
        return Err(format!(
            "{} values for shape {:?}",
            values.len(),
            tensor.dims
        ));
    }
    Ok(Constant {
        dims: tensor.dims.clone(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initializer(name: &str, data_type: i32, dims: Vec<i64>) -> proto::TensorProto {
        proto::TensorProto {
            name: Some(name.into()),
            data_type: Some(data_type),
            dims,
            ..Default::default()
        }
    }

    #[test]
    fn shapes_that_overflow_or_are_negative_are_refused() {
        // 2^62 · 4 wrapped to 0 elements, which the empty data matched: a view of 2^64
        // elements then panicked
        let error = constant_from_proto(&initializer("w", proto::FLOAT, vec![1 << 62, 4]));
        assert!(error.unwrap_err().contains("values for shape"));
        let mut negative = initializer("w", proto::FLOAT, vec![-1, -4]);
        negative.float_data = vec![0.0; 4];
        assert!(constant_from_proto(&negative).is_err());
        assert_eq!(element_count(&[2, 3, 0]), Some(0));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[i64::MAX, 3]), None);
    }

    #[test]
    fn an_empty_int8_weight_declaring_many_channels_allocates_nothing() {
        // [2^40, 0] holds no values; its int8 form once filled 2^40 scales (a 4 TiB allocation)
        let mut scale = initializer("scale", proto::FLOAT, vec![1]);
        scale.float_data = vec![0.5];
        let graph = proto::GraphProto {
            initializer: vec![initializer("w", proto::INT8, vec![1 << 40, 0]), scale],
            node: vec![proto::NodeProto {
                input: vec!["w".into(), "scale".into()],
                output: vec!["w_float".into()],
                op_type: Some("DequantizeLinear".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let graph = QdqGraph::new(graph).unwrap();
        assert!(graph.int8_weight("w_float").is_none());
        assert_eq!(graph.constant("w_float").unwrap().size(), [1 << 40, 0]);
    }
}
