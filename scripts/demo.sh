#!/usr/bin/env bash
# `make demo`: the main job on bundled defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-output}
mkdir -p "$out"
echo "[demo] inference has not landed yet; showing what this build runs on"
target/release/atelier info
