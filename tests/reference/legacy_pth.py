"""torch.save files, legacy (pre-zip) and zip, for models/tests/torch_legacy.rs.

Usage:
  .venv/bin/python tests/reference/legacy_pth.py OUT_DIR SEED

Writes to OUT_DIR:
  johnson_legacy.pth      a pytorch/examples `fast_neural_style` state dict (random weights plus the
                          `in*.running_mean/var`, `num_batches_tracked` entries of old files) saved
                          with `_use_new_zipfile_serialization=False`
  johnson_zip.pth         the same tensors in the zip format, as a plain dict (libtorch reads it)
  johnson_io.safetensors  `input` and the network's `output` on it
  views_legacy.pth        tensors sharing storages (transposed, sliced, strided, expanded views),
                          f16/bf16/f64/i64/i32/u8 storages, a 0-dim and an empty tensor
  views_expected.safetensors  what torch.load gives for views_legacy.pth, contiguous, native dtypes
  py2_legacy.pth          a file written byte by byte the way PyTorch 0.3 on Python 2 wrote it
                          (protocol 2, byte-string names, `_rebuild_tensor`, OrderedDict reduced
                          to a list of pairs, a storage view, a cuda location), checked here by
                          torch.load itself
  py2_expected.safetensors    what torch.load gives for py2_legacy.pth
  johnson_ordered_zip.pth the johnson_legacy.pth OrderedDict (with `_metadata`) in the zip format
  johnson_state_dict.pth  `net.state_dict()` of the same network, zip format, as saved today
  checkpoint.pth          {'state_dict': net.state_dict(), 'epoch': 3, 'optimizer': Adam's state
                          dict after one step} (zip)
  checkpoint_legacy.pth   {'model': net.state_dict(), 'epoch': 3}, legacy format
  not_a_checkpoint.pth    {'weights': net.state_dict(), 'epoch': 3}: neither `state_dict` nor `model`
  deflated.pth            johnson_state_dict.pth's entries deflated, under an `archive/` folder
  missing_storage.pth     johnson_state_dict.pth without its `data/0` entry
  big_endian.pth          johnson_state_dict.pth with `byteorder` saying `big`
  foreign.pth             a zip archive that is not a torch.save file
  vgg16_ordered.pth       a torchvision-layout VGG-16 `module.state_dict()` (features at full size,
                          a tiny classifier), random weights, zip format
  vgg16_ordered.safetensors   the same tensors
"""

import copy
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import TransformerNet, image, vgg_features, weights_of  # noqa: E402


def johnson_files(out):
    net = TransformerNet()
    state = OrderedDict()
    for name, tensor in weights_of(net).items():
        state[name] = tensor
        parts = name.split(".")
        if parts[-2].startswith("in") and parts[-1] == "bias":
            prefix = name[: -len("bias")]
            c = tensor.shape[0]
            state[prefix + "running_mean"] = torch.zeros(c)
            state[prefix + "running_var"] = torch.ones(c)
            state[prefix + "num_batches_tracked"] = torch.tensor(0)
    # as `module.state_dict()` returns it
    state._metadata = OrderedDict((name, {"version": 1}) for name, _ in net.named_modules())
    torch.save(state, out / "johnson_legacy.pth", _use_new_zipfile_serialization=False)
    # a plain dict, which libtorch's zip reader (the tests' oracle) can read: it fails on an
    # OrderedDict
    torch.save(dict(state), out / "johnson_zip.pth")
    x = image(1, 3, 40, 36)
    with torch.no_grad():
        save_file({"input": x, "output": net(x)}, out / "johnson_io.safetensors")
    return net, state


def zip_files(out, net, state):
    """libtorch's zip reader fails on these: each holds an OrderedDict."""
    torch.save(state, out / "johnson_ordered_zip.pth")
    state_dict = net.state_dict()
    assert isinstance(state_dict, OrderedDict) and hasattr(state_dict, "_metadata")
    torch.save(state_dict, out / "johnson_state_dict.pth")

    # an optimizer state with tensors of its own (on a copy: the step changes the weights)
    trained = copy.deepcopy(net)
    optimizer = torch.optim.Adam(trained.parameters())
    trained(image(1, 3, 16, 16)).mean().backward()
    optimizer.step()
    torch.save({"state_dict": state_dict, "epoch": 3, "optimizer": optimizer.state_dict()}, out / "checkpoint.pth")
    torch.save({"model": state_dict, "epoch": 3}, out / "checkpoint_legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"weights": state_dict, "epoch": 3}, out / "not_a_checkpoint.pth")

    def rewrite(name, change):
        with zipfile.ZipFile(out / "johnson_state_dict.pth") as source, zipfile.ZipFile(out / name, "w") as target:
            for info in source.infolist():
                changed = change(info.filename, source.read(info))
                if changed is not None:
                    target.writestr(*changed)

    rewrite("deflated.pth", lambda name, data: ("archive/" + name.split("/", 1)[1], data, zipfile.ZIP_DEFLATED))
    rewrite("missing_storage.pth", lambda name, data: None if name.endswith("/data/0") else (name, data))
    rewrite("big_endian.pth", lambda name, data: (name, b"big" if name.endswith("/byteorder") else data))
    assert torch.load(out / "deflated.pth")["conv1.conv2d.weight"].equal(state["conv1.conv2d.weight"])
    with zipfile.ZipFile(out / "foreign.pth", "w") as foreign:
        foreign.writestr("notes/readme.txt", "not a model\n")


def vgg16_files(out):
    """As torchvision's `vgg16().state_dict()` names them; its 4096-wide classifier would be
    large and is ignored anyway, so it is tiny here."""
    net = torch.nn.Module()
    net.features = vgg_features("vgg16")
    net.avgpool = torch.nn.AdaptiveAvgPool2d((7, 7))
    net.classifier = torch.nn.Sequential(
        torch.nn.Linear(12, 8), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(8, 8), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(8, 5))
    state = net.state_dict()
    assert list(state)[:3] == ["features.0.weight", "features.0.bias", "features.2.weight"], list(state)
    assert list(state)[-2:] == ["classifier.6.weight", "classifier.6.bias"], list(state)
    torch.save(state, out / "vgg16_ordered.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, out / "vgg16_ordered.safetensors")


def views_files(out):
    base = torch.randn(6, 8)
    state = OrderedDict()
    state["base"] = base
    state["transposed"] = base.t()
    state["rows"] = base[2:5]
    state["strided"] = base[1:, ::3]
    state["expanded"] = torch.randn(3, 1).expand(3, 4)
    state["half"] = torch.randn(4, 5).half()
    state["bfloat16"] = torch.randn(7).bfloat16()
    state["double"] = torch.randn(2, 3, dtype=torch.float64)[:, 1:]
    state["long"] = torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4)[1:]
    state["int"] = torch.arange(10, dtype=torch.int32) * -3
    state["byte"] = torch.arange(250, 256, dtype=torch.uint8)
    state["scalar"] = torch.tensor(3.5)
    state["empty"] = torch.zeros(0, 4)
    torch.save(state, out / "views_legacy.pth", _use_new_zipfile_serialization=False)
    loaded = torch.load(out / "views_legacy.pth", weights_only=True)
    assert torch.equal(loaded["transposed"], base.t())
    assert loaded["transposed"].data_ptr() == loaded["base"].data_ptr()
    save_file({k: v.clone(memory_format=torch.contiguous_format) for k, v in loaded.items()}, out / "views_expected.safetensors")


class Py2Pickle:
    """The opcodes Python 2's pickle (protocol 2) wrote for a PyTorch 0.3 state dict."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = 0

    def put(self):
        self.out += b"q" + bytes([self.memo])
        self.memo += 1

    def op(self, code):
        self.out += code

    def string(self, s):  # a Python 2 str: SHORT_BINSTRING or BINSTRING
        b = s.encode()
        self.out += (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b
        self.put()

    def int(self, i):
        if 0 <= i < 256:
            self.out += b"K" + bytes([i])
        elif 0 <= i < 65536:
            self.out += b"M" + struct.pack("<H", i)
        else:
            self.out += b"J" + struct.pack("<i", i)

    def ints(self, values):
        self.op(b"(")
        for v in values:
            self.int(v)
        self.op(b"t")
        self.put()

    def glob(self, module, name):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        self.put()

    def stop(self):
        return bytes(self.out + b".")


def py2_files(out):
    """Three storages: a float one that two tensors use (one through a storage view, as 0.3
    could write them), a double one on cuda:0, a long one."""
    floats = torch.randn(20)
    doubles = torch.randn(6, dtype=torch.float64)
    longs = torch.arange(4, dtype=torch.int64) - 2
    storages = {"140230": ("FloatStorage", "cpu", floats), "140118": ("DoubleStorage", "cuda:0", doubles),
                "140500": ("LongStorage", "cpu", longs)}
    # name, root key, view (key, offset, size) or None, offset, size, stride
    tensors = [
        ("conv.weight", "140230", None, 2, (3, 4), (1, 3)),
        ("conv.bias", "140230", ("140999", 8, 10), 1, (2, 3), (3, 1)),
        ("norm.weight", "140118", None, 0, (2, 3), (3, 1)),
        ("norm.steps", "140500", None, 3, (), ()),
    ]
    p = Py2Pickle()
    p.glob("collections", "OrderedDict")
    p.op(b"]")  # items: [[name, tensor], ...]
    p.put()
    p.op(b"(")
    for name, key, view, offset, size, stride in tensors:
        p.op(b"]")
        p.put()
        p.op(b"(")
        p.string(name)
        p.glob("torch._utils", "_rebuild_tensor")
        p.op(b"(")
        p.op(b"(")  # persistent id
        p.string("storage")
        storage_type, location, data = storages[key]
        p.glob("torch", storage_type)
        p.string(key)
        p.string(location)
        p.int(data.numel())
        if view is None:
            p.op(b"N")
        else:
            p.string(view[0])
            p.int(view[1])
            p.int(view[2])
            p.op(b"\x87")
            p.put()
        p.op(b"t")
        p.put()
        p.op(b"Q")
        p.int(offset)
        p.ints(size)
        p.ints(stride)
        p.op(b"t")
        p.put()
        p.op(b"R")
        p.put()
        p.op(b"e")
    p.op(b"e")
    p.op(b"\x85")
    p.put()
    p.op(b"R")
    p.put()
    # BUILD with the instance dict ({"_metadata": {...}}) as OrderedDict.__reduce__ gave it
    p.op(b"}")
    p.put()
    p.string("_metadata")
    p.op(b"}")
    p.put()
    p.string("version")
    p.int(1)
    p.op(b"s")
    p.op(b"s")
    p.op(b"b")
    obj = p.stop()

    keys = Py2Pickle()
    keys.op(b"]")
    keys.put()
    keys.op(b"(")
    order = sorted(storages)
    for key in order:
        keys.string(key)
    keys.op(b"e")

    with open(out / "py2_legacy.pth", "wb") as f:
        f.write(b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".")
        f.write(b"\x80\x02M\xe9\x03.")
        f.write(b"\x80\x02}q\x00(U\x10protocol_versionq\x01M\xe9\x03U\rlittle_endianq\x02\x88"
                b"U\ntype_sizesq\x03}q\x04(U\x05shortq\x05K\x02U\x03intq\x06K\x04U\x04longq\x07K\x08uu.")
        f.write(obj)
        f.write(keys.stop())
        for key in order:
            data = storages[key][2]
            f.write(struct.pack("<q", data.numel()))
            f.write(data.numpy().tobytes())

    loaded = torch.load(out / "py2_legacy.pth", map_location="cpu", weights_only=False)
    assert list(loaded) == [t[0] for t in tensors], list(loaded)
    assert loaded._metadata == {"version": 1}
    assert torch.equal(loaded["conv.weight"], floats.as_strided((3, 4), (1, 3), 2))
    assert torch.equal(loaded["conv.bias"], floats.as_strided((2, 3), (3, 1), 9))
    save_file({k: v.clone(memory_format=torch.contiguous_format) for k, v in loaded.items()}, out / "py2_expected.safetensors")


def main(out, seed):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net, state = johnson_files(out)
    views_files(out)
    py2_files(out)
    zip_files(out, net, state)
    vgg16_files(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), int(sys.argv[2]))
