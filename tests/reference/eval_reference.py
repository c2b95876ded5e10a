"""An independent PyTorch computation of `atelier eval`'s numbers (tests/eval.rs).

Usage: .venv/bin/python tests/reference/eval_reference.py VGG19 IMAGES OUT.json

VGG19 is the `make vgg` weights (torchvision `features.N.*` layout, Caffe preprocessing).
IMAGES (safetensors) holds `style` [3, H, W] and, per image i, `photo.i` and `stylized.i`
[3, h, w] (RGB 0-255, already at the sizes the yardstick compares them at). OUT.json gets, per
image, the weighted terms: content (relu4_2, MSE, x5), style per layer (relu1_1 ... relu5_1,
Gram / (c*h*w), MSE, x100 each) and tv (mean squared neighbour differences, x1).
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import gram, tv, vgg_features, vgg_taps  # noqa: E402

CONTENT_TAP, CONTENT_WEIGHT = "relu4_2", 5.0
STYLE_TAPS, STYLE_WEIGHT = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], 100.0
TV_WEIGHT = 1.0


@torch.no_grad()
def main():
    weights = load_file(sys.argv[1])
    vgg = vgg_features("vgg19")
    vgg.load_state_dict({k.removeprefix("features."): v.float() for k, v in weights.items()})
    vgg = vgg.double()
    images = {k: v.double() for k, v in load_file(sys.argv[2]).items()}
    style = vgg_taps("vgg19", vgg, images["style"][None])
    style_grams = {t: gram(style[t]) for t in STYLE_TAPS}
    out = []
    i = 0
    while f"photo.{i}" in images:
        photo = vgg_taps("vgg19", vgg, images[f"photo.{i}"][None])
        x = images[f"stylized.{i}"][None]
        stylized = vgg_taps("vgg19", vgg, x)
        out.append(
            {
                "content": F.mse_loss(stylized[CONTENT_TAP], photo[CONTENT_TAP]).item() * CONTENT_WEIGHT,
                "style_layers": [
                    F.mse_loss(gram(stylized[t]), style_grams[t]).item() * STYLE_WEIGHT for t in STYLE_TAPS
                ],
                "tv": tv(x).item() * TV_WEIGHT,
            }
        )
        i += 1
    with open(sys.argv[3], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
