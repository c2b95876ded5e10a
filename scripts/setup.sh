#!/usr/bin/env bash
# One-time, idempotent setup for a fresh Debian machine with a Rust toolchain and python3.
#   scripts/setup.sh          libtorch (torch 2.11.0 in .venv), rustfmt/clippy, ffmpeg
#   scripts/setup.sh test     ... plus the Python packages the test suite reads back with
# Each step checks whether it is already done and says what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
TEST_PY_PACKAGES=(numpy safetensors onnxruntime onnx tensorboard selenium)

say() { printf '[setup] %s\n' "$*"; }

python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating the project venv in .venv"
  "$python_bin" -m venv .venv
fi

if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  say "installing torch==$TORCH_VERSION into .venv (about 2.5 GiB download, 4.4 GiB installed)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION"
fi

torch_dir=$(.venv/bin/python -c "import torch, os; print(os.path.dirname(torch.__file__))" 2>/dev/null)
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$torch_dir" ]; then
  say "linking .libtorch -> $torch_dir"
  ln -sfn "$torch_dir" .libtorch
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    say "adding the rustup component $component"
    rustup component add "$component"
  fi
done

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ffmpeg from Debian packages (atelier video needs it)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    say "ffmpeg is missing and cannot be installed here (not root); install it for atelier video"
  fi
fi

# The page test of `atelier serve` drives Debian's headless Chromium through its driver.
if [ "${1:-}" = test ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium and chromium-driver from Debian packages (the page test uses them)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    say "chromium is missing and cannot be installed here (not root); the page test will be skipped"
  fi
fi

# tests/slurm.rs submits the Slurm examples to a one-node cluster on this machine, where one
# can be installed and started (ATELIER_LOCAL_SLURM=0 leaves Slurm alone).
if [ "${1:-}" = test ] && [ "${ATELIER_LOCAL_SLURM:-1}" != 0 ]; then
  # Never fatal: without a cluster that runs jobs, tests/slurm.rs says so and passes.
  scripts/local-slurm.sh || say "no local Slurm (scripts/local-slurm.sh failed); tests/slurm.rs will skip"
fi

if [ "${1:-}" = test ]; then
  missing=()
  for pkg in "${TEST_PY_PACKAGES[@]}"; do
    .venv/bin/python -c "import $pkg" 2>/dev/null || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing test packages into .venv: ${missing[*]}"
    .venv/bin/python -m pip install --quiet "${missing[@]}"
  fi
fi
