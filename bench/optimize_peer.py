"""The optimization of `atelier optimize` in eager PyTorch, for its iterations/s comparison
(bench/quality.py): the same VGG-19 (`make vgg`), the same losses and weights (content relu4_2 x 5,
style relu1_1..relu5_1 x 100 each, Gram / (c*h*w), mean squared errors, TV x 1), the same start
(the photo), `torch.optim.LBFGS` with history 100 and no line search, as the usual PyTorch
style-transfer code writes it (NCHW).

Usage: .venv/bin/python bench/optimize_peer.py CONTENT STYLE --size 256 --iterations 20 --threads 2
Prints one JSON line: seconds of the iterations alone, iterations/s, the final loss.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
from reference import gram, tv, vgg_features, vgg_preprocess  # noqa: E402

STYLE_TAPS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT_TAP = "relu4_2"


def load(path, size):
    image = Image.open(path).convert("RGB")
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()


def taps(vgg, rgb, wanted):
    out, x, block, conv = {}, vgg_preprocess("vgg19", rgb), 1, 0
    deepest = max(wanted)
    for layer in vgg:
        x = layer(x)
        if isinstance(layer, torch.nn.ReLU):
            conv += 1
            name = f"relu{block}_{conv}"
            if name in wanted:
                out[name] = x
            if name == deepest:
                break
        elif isinstance(layer, torch.nn.MaxPool2d):
            block, conv = block + 1, 0
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("content")
    parser.add_argument("style")
    parser.add_argument("--weights", default="weights/vgg19.safetensors")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vgg = vgg_features("vgg19")
    vgg.load_state_dict({k.removeprefix("features."): v.float() for k, v in load_file(args.weights).items()})
    for p in vgg.parameters():
        p.requires_grad_(False)
    content, style = load(args.content, args.size), load(args.style, args.size)
    with torch.no_grad():
        content_target = taps(vgg, content, [CONTENT_TAP])[CONTENT_TAP]
        style_grams = {t: gram(f) for t, f in taps(vgg, style, STYLE_TAPS).items()}
    x = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=args.iterations, history_size=100)
    losses = []

    def closure():
        opt.zero_grad()
        f = taps(vgg, x, STYLE_TAPS + [CONTENT_TAP])
        loss = 5.0 * F.mse_loss(f[CONTENT_TAP], content_target)
        for t in STYLE_TAPS:
            loss = loss + 100.0 * F.mse_loss(gram(f[t]), style_grams[t])
        loss = loss + 1.0 * tv(x)
        loss.backward()
        losses.append(loss.item())
        return loss

    start = time.perf_counter()
    opt.step(closure)
    seconds = time.perf_counter() - start
    n_iter = opt.state[x]["n_iter"]
    print(json.dumps({"seconds": seconds, "iterations": n_iter, "iterations_per_s": n_iter / seconds, "evaluations": len(losses), "loss": losses[-1]}))


if __name__ == "__main__":
    main()
