"""The quality section of BENCHMARKS.md, in the manner of Johnson et al. 2016 (Fig. 5, Table 1):
the yardstick loss (`atelier eval`) reached by each feed-forward source against the optimization
after N L-BFGS iterations, with wall times, and the optimizer's iterations/s against the same
optimization in eager PyTorch (bench/optimize_peer.py), interleaved run by run.

Usage:
  .venv/bin/python bench/quality.py --photos HELD_OUT_DIR --style STYLE --model TRAINED.safetensors \
      --arbitrary --builtin 7 --size 256 --iterations 10,50,100,300 --speed-iterations 10 --rounds 2 > quality.md

The photos must not have been used to train the model. One optimization per photo runs to the
largest iteration count, writing the image at every count (`--save-every`); each is then measured.
Wall times of the optimization are the times its intermediate files were written, from the start
of the process (VGG loading included).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "atelier"


def run(cmd):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{out.stderr}")
    return out.stdout


def evaluate(photos, style, source, threads):
    out = run([BIN, "eval", photos, "--style", style, "--device", "cpu", "--threads", threads, "--json", *source])
    return json.loads(out)["mean"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--photos", required=True)
    p.add_argument("--style", required=True)
    p.add_argument("--model")
    p.add_argument("--builtin")
    p.add_argument("--arbitrary", action="store_true", help="add the arbitrary-style network given --style")
    p.add_argument("--size", default="256")
    p.add_argument("--iterations", default="10,50,100,300")
    p.add_argument("--speed-iterations", default="10")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", default="2")
    p.add_argument("--reuse", help="folder of an earlier optimization run (PHOTO-NNNN.png, start)")
    args = p.parse_args()
    counts = [int(n) for n in args.iterations.split(",")]
    photos = sorted(Path(args.photos).iterdir())
    work = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp())
    rows = []

    # Optimization: one run per photo to the largest count, images written at every count.
    walls = {n: [] for n in counts}
    for photo in photos:
        out = work / f"{photo.stem}.png"
        start_file = work / f"{photo.stem}.start"
        if not args.reuse:
            start_file.write_text(str(time.time()))
            every = str(min(counts))
            run([BIN, "optimize", photo, "--style", args.style, "-o", out, "--sizes", args.size,
                 "--iterations", str(max(counts)), "--save-every", every, "--device", "cpu",
                 "--threads", args.threads, "--force", "--quiet"])
        start = float(start_file.read_text())
        for n in counts:
            walls[n].append(os.path.getmtime(work / f"{photo.stem}-{n:04}.png") - start)
    for n in counts:
        folder = Path(tempfile.mkdtemp())
        for photo in photos:
            shutil.copy(work / f"{photo.stem}-{n:04}.png", folder / f"{photo.stem}.png")
        rows.append((f"optimization, {n} L-BFGS iterations", evaluate(args.photos, args.style, ["--stylized", folder], args.threads), statistics.mean(walls[n])))

    # Feed-forward sources: the loss of their outputs, the time of one stylization.
    sources = []
    if args.model:
        sources.append((f"trained network (`atelier train`, {Path(args.model).name})", ["--model", args.model], ["-m", args.model]))
    if args.builtin is not None:
        sources.append((f"built-in network, style {args.builtin}", ["--builtin", args.builtin], ["--style", args.builtin]))
    if args.arbitrary:
        sources.append(("arbitrary-style network (`--style-image`, no training)", ["--arbitrary"],
                        ["--style-image", args.style]))
    for name, eval_source, stylize_source in sources:
        seconds = []
        for photo in photos:
            out = Path(tempfile.mkdtemp()) / "out.png"
            record = json.loads(run([BIN, "stylize", photo, *stylize_source, "--max-size", args.size, "-o", out,
                                     "--device", "cpu", "--threads", args.threads, "--json"]).splitlines()[-1])
            seconds.append(record["seconds"])
        metrics = evaluate(args.photos, args.style, [*eval_source, "--size", args.size], args.threads)
        rows.append((name, metrics, statistics.mean(seconds)))

    print(f"Photos (not used for training): {', '.join(p.name for p in photos)}; style: {Path(args.style).name}; "
          f"longer side {args.size}; {args.threads} threads. Losses are `atelier eval`'s yardstick, means over the photos.\n")
    print("| source | total | content | style | tv | wall time |")
    print("|---|---|---|---|---|---|")
    for name, m, seconds in rows:
        print(f"| {name} | {m['total']:.4g} | {m['content']:.4g} | {m['style']:.4g} | {m['tv']:.3g} | {seconds:.1f} s |")

    # Iterations/s against eager PyTorch, interleaved.
    ours, theirs = [], []
    photo = photos[0]
    for _ in range(args.rounds):
        out = Path(tempfile.mkdtemp()) / "speed.png"
        record = json.loads(run([BIN, "optimize", photo, "--style", args.style, "-o", out, "--sizes", args.size,
                                 "--iterations", args.speed_iterations, "--device", "cpu", "--threads", args.threads,
                                 "--json", "--quiet"]))
        ours.append(record["iterations_per_s"])
        peer = json.loads(run([ROOT / ".venv/bin/python", ROOT / "bench/optimize_peer.py", photo, args.style,
                               "--weights", ROOT / "weights/vgg19.safetensors", "--size", args.size,
                               "--iterations", args.speed_iterations, "--threads", args.threads]))
        theirs.append(peer["iterations_per_s"])
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\nL-BFGS iterations/s at {args.size} px ({photo.name}, {args.speed_iterations} iterations, "
          f"{args.rounds} interleaved rounds, medians): Atelier {a:.3f}, eager PyTorch (`torch.optim.LBFGS`) {b:.3f}, "
          f"ratio {a / b:.2f}x. Load average after: {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
