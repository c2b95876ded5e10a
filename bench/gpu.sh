#!/usr/bin/env bash
# The GPU benchmark: Atelier (a binary built elsewhere) against eager PyTorch on CUDA, on a
# machine with an NVIDIA GPU and python3 with torch 2.11 (the libtorch the binary was built
# against), no Rust and no network needed. Run it from a repository checkout, or from the
# folder `bench/pack-gpu.sh` makes (binary + the few files below, a few MiB):
#
#   bench/gpu.sh [OUT_DIR]          # default OUT_DIR: bench/gpu-results
#
# Writes OUT_DIR/BENCHMARKS-gpu.md and OUT_DIR/results-gpu.json. Measures, for the johnson and
# the 26-style network at 1024x1024, f32 (TF32 convolutions), bf16 and f16, NCHW and
# channels-last, batch 1 and 8, with cuDNN benchmark mode; and training steps at 256x256,
# batch 4, VGG-16 and VGG-19, f32 and bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/gpu-results}
python=${PYTHON:-python3}

torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${ATELIER_BIN:-}" ]; then
  if [ -x target/release/atelier ]; then ATELIER_BIN=target/release/atelier; else ATELIER_BIN=./atelier; fi
fi
export ATELIER_BIN=$(realpath "$ATELIER_BIN")

"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device visible to torch"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
"$ATELIER_BIN" info
"$ATELIER_BIN" info --json | "$python" -c 'import json, sys; assert json.load(sys.stdin)["cuda_available"], "atelier sees no CUDA device (is LD_LIBRARY_PATH on torch/lib?)"'

"$python" bench/run.py --device cuda --out-dir "$out" "${@:2}"
echo "results: $out/BENCHMARKS-gpu.md"
