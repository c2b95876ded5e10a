"""PyTorch reference of Atelier's training step (trainer/tests/reference.rs) and its speed benchmark
(scripts/bench_train.sh).

Usage:
  .venv/bin/python tests/reference/train_reference.py step FIXTURE OUT
      FIXTURE (safetensors, written by the Rust test) holds the transformer weights (`net.*`), the
      VGG weights (`vgg.features.N.*`, torchvision layout), a batch `batch` [B, 3, S, S] and one
      style image `style` [3, H, W] (RGB 0-255), and in its header `config`: the loss network,
      taps, loss weights, learning rate. Runs one step of the pytorch/examples
      `fast_neural_style` training loop with Atelier's conventions and writes to OUT the loss
      terms (`loss.content`, `loss.style.<tap>`, `loss.tv`, `loss.total`), the gradients
      (`grad.<name>`) and the parameters after one `torch.optim.Adam` step (`param.<name>`).
      With --float64 the same step in float64, to measure both float32 results against.
  .venv/bin/python tests/reference/train_reference.py bench --device cuda --steps 50 ...
      Times the same loop (VGG-16 taps, batch of random images, pytorch/examples settings) and
      prints seconds per step.

Loss conventions (as in pytorch/examples): the VGG sees RGB 0-255 through its own preprocessing,
Gram matrices are divided by c*h*w, every squared error is a mean over all elements, the style
Gram of the single style image is broadcast over the batch. The content targets come from a
no-grad VGG pass of the batch.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import TransformerNet, gram, tv, vgg_features, vgg_taps  # noqa: E402

ARCHS = {
    "johnson": dict(down=(32, 64, 128), up=(64, 32), n_res=5),
    "johnson-half": dict(down=(16, 32, 64), up=(32, 16), n_res=5),
}


def losses(net, vgg, kind, batch, style_grams, cfg):
    y = net(batch)
    with torch.no_grad():
        targets = vgg_taps(kind, vgg, batch)
    features = vgg_taps(kind, vgg, y)
    mse = nn.functional.mse_loss
    content = sum(mse(features[t], targets[t]) for t in cfg["content_taps"]) * cfg["content_weight"]
    style = {
        t: mse(gram(features[t]), g.expand(batch.shape[0], -1, -1)) * w * cfg["style_weight"]
        for t, g, w in zip(cfg["style_taps"], style_grams, cfg["style_layer_weights"])
    }
    tv_term = tv(y) * cfg["tv_weight"]
    total = content + sum(style.values()) + tv_term
    return content, style, tv_term, total


def main_step(fixture, out, float64=False):
    dtype = torch.float64 if float64 else torch.float32
    torch.set_default_dtype(dtype)
    with safe_open(fixture, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k).to(dtype) for k in f.keys()}
    kind = cfg["loss_net"]
    vgg = vgg_features(kind)
    vgg.load_state_dict({k[len("vgg.features."):]: v for k, v in tensors.items() if k.startswith("vgg.")})
    for p in vgg.parameters():
        p.requires_grad_(False)
    net = TransformerNet(**ARCHS[cfg["arch"]])
    net.load_state_dict({k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")})
    batch, style = tensors["batch"], tensors["style"].unsqueeze(0)
    with torch.no_grad():
        style_features = vgg_taps(kind, vgg, style)
        style_grams = [gram(style_features[t]) for t in cfg["style_taps"]]

    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["lr"], foreach=False)
    optimizer.zero_grad()
    content, style_terms, tv_term, total = losses(net, vgg, kind, batch, style_grams, cfg)
    total.backward()
    result = {"loss.content": content, "loss.tv": tv_term, "loss.total": total}
    result.update({f"loss.style.{t}": v for t, v in style_terms.items()})
    result = {k: v.detach().reshape(1) for k, v in result.items()}
    for name, p in net.named_parameters():
        result[f"grad.{name}"] = p.grad.detach().clone()
    optimizer.step()
    for name, p in net.named_parameters():
        result[f"param.{name}"] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in result.items()}, out)


def main_bench(args):
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    kind = args.loss_net
    vgg = vgg_features(kind).to(device)
    for p in vgg.parameters():
        p.requires_grad_(False)
    net = TransformerNet(**ARCHS[args.arch]).to(device)
    if kind == "vgg16":
        content_taps, style_taps = ["relu2_2"], ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    else:
        content_taps, style_taps = ["relu4_2"], ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    cfg = dict(content_taps=content_taps, style_taps=style_taps, style_layer_weights=[1.0] * len(style_taps),
               content_weight=1e5, style_weight=1e10, tv_weight=0.0)
    style = torch.rand(1, 3, args.image_size, args.image_size, device=device) * 255
    with torch.no_grad():
        style_features = vgg_taps(kind, vgg, style)
        style_grams = [gram(style_features[t]) for t in style_taps]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = [torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 255 for _ in range(4)]
    if device.type == "cuda":
        batches = [b.pin_memory() for b in batches]

    def step(i):
        batch = batches[i % len(batches)].to(device, non_blocking=True)
        optimizer.zero_grad()
        *_, total = losses(net, vgg, kind, batch, style_grams, cfg)
        total.backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    print(f"pytorch {torch.__version__} {args.device} {kind} {args.arch} batch {args.batch_size} "
          f"size {args.image_size}: {seconds:.4f} s/step")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    step = sub.add_parser("step")
    step.add_argument("fixture")
    step.add_argument("out")
    step.add_argument("--float64", action="store_true",
                      help="compute in float64: the ground truth both float32 results are measured against")
    bench = sub.add_parser("bench")
    bench.add_argument("--device", default="cuda")
    bench.add_argument("--loss-net", default="vgg16")
    bench.add_argument("--arch", default="johnson")
    bench.add_argument("--batch-size", type=int, default=4)
    bench.add_argument("--image-size", type=int, default=256)
    bench.add_argument("--steps", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if args.command == "step":
        main_step(args.fixture, args.out, args.float64)
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
