#!/usr/bin/env bash
# `make demo`: the main job on bundled defaults. Stylizes the bundled photos with a few of the
# built-in styles (and one mix of two) and with a style picture through the arbitrary-style
# network, renders a contact sheet of all 26, and says where everything is. Re-running
# overwrites the previous results.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-output}
atelier=target/release/atelier
mkdir -p "$out"

echo "[demo] stylizing assets/photos with built-in styles into $out/"
for style in 19 7 13 3:0.5,12:0.5; do
  name="style-${style//[:,.]/-}"
  echo "[demo] --style $style -> $out/$name/"
  "$atelier" stylize assets/photos --style "$style" -o "$out/$name"
done

echo "[demo] any picture as a style: --style-image assets/styles/swirls.png -> $out/style-image/"
"$atelier" stylize assets/photos --style-image assets/styles/swirls.png -o "$out/style-image"

echo "[demo] contact sheet of every built-in style"
"$atelier" sheet assets/photos/chelsea.png -o "$out/sheet.png" --force

echo
echo "[demo] done. Results:"
find "$out" -type f | sort | sed 's/^/  /'
