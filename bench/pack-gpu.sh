#!/usr/bin/env bash
# Packs what bench/gpu.sh needs on a GPU machine without Rust: the release binary and a few
# small files (about 8 MiB). Usage: bench/pack-gpu.sh [OUT.tar.gz]; there: tar xzf, bench/gpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/atelier-gpu-bench.tar.gz}
[ -x target/release/atelier ] || { echo "build first: cargo build --release" >&2; exit 2; }
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/atelier-gpu-bench/target/release"
cp target/release/atelier "$staging/atelier-gpu-bench/target/release/"
tar cf - bench/run.py bench/peers.py bench/gpu.sh tests/reference/reference.py \
  tests/reference/train_reference.py assets/multistyle26.safetensors assets/photos/astronaut.png \
  | tar xf - -C "$staging/atelier-gpu-bench"
tar czf "$out" -C "$staging" atelier-gpu-bench
echo "$out: $(du -h "$out" | cut -f1)"
