#!/usr/bin/env bash
# Seconds per training step: `atelier train` against the PyTorch reference loop
# (tests/reference/train_reference.py bench), same network, loss network, batch and crop size,
# same machine and libtorch. A benchmark to read, not a test.
#   scripts/bench_train.sh [DEVICE] [STEPS]       DEVICE: cuda (default) or cpu
# Env: DATA (photo folder, default assets/photos), BATCH (4), SIZE (256), ARCH (johnson),
#      LOSS_NET (vgg16), PRECISION (f32), THREADS (CPU threads, default all).
# Loss-network weights are random (torchvision layout): speed does not depend on their values.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cuda}
steps=${2:-60}
data=${DATA:-assets/photos}
batch=${BATCH:-4}
size=${SIZE:-256}
arch=${ARCH:-johnson}
loss_net=${LOSS_NET:-vgg16}
precision=${PRECISION:-f32}
threads=${THREADS:-$(nproc)}
warmup=10
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
.venv/bin/python - "$work/vgg.safetensors" "$loss_net" <<'PY'
import sys
sys.path.insert(0, "tests/reference")
import torch
from safetensors.torch import save_file
from reference import vgg_features
torch.manual_seed(0)
save_file({f"features.{k}": v.contiguous() for k, v in vgg_features(sys.argv[2]).state_dict().items()}, sys.argv[1])
PY

.venv/bin/python tests/reference/train_reference.py bench --device "$device" --loss-net "$loss_net" \
  --arch "$arch" --batch-size "$batch" --image-size "$size" --steps "$steps" --warmup "$warmup" \
  --threads "$threads"

# atelier: log every step, then average the steps after the warm-up from the JSON log.
target/release/atelier train --style assets/styles/swirls.png --data "$data" -o "$work/model.safetensors" \
  --loss-net "$loss_net" --loss-weights "$work/vgg.safetensors" --arch "$arch" --batch-size "$batch" \
  --image-size "$size" --steps $((steps + warmup)) --log-every 1 --checkpoint-every 1000000 \
  --device "$device" --precision "$precision" --threads "$threads" --log-json "$work/log.jsonl" --quiet
.venv/bin/python - "$work/log.jsonl" "$warmup" "$batch" "$device" "$loss_net" "$arch" "$size" "$precision" <<'PY'
import json, sys
path, warmup, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rates = [json.loads(l)["images_per_sec"] for l in open(path)][warmup:]
seconds = sum(batch / r for r in rates) / len(rates)
device, net, arch, size, precision = sys.argv[4:9]
print(f"atelier {device} {net} {arch} batch {batch} size {size} {precision}: {seconds:.4f} s/step")
PY
