"""Legacy (pre-zip) torch.save files for models/tests/torch_legacy.rs.

Usage:
  .venv/bin/python tests/reference/legacy_pth.py OUT_DIR SEED

Writes to OUT_DIR:
  johnson_legacy.pth      a pytorch/examples `fast_neural_style` state dict (random weights plus the
                          `in*.running_mean/var`, `num_batches_tracked` entries of old files) saved
                          with `_use_new_zipfile_serialization=False`
  johnson_zip.pth         the same tensors in the zip format, as a plain dict
  johnson_io.safetensors  `input` and the network's `output` on it
  views_legacy.pth        tensors sharing storages (transposed, sliced, strided, expanded views),
                          f16/bf16/f64/i64/i32/u8 storages, a 0-dim and an empty tensor
  views_expected.safetensors  what torch.load gives for views_legacy.pth, contiguous, native dtypes
  py2_legacy.pth          a file written byte by byte the way PyTorch 0.3 on Python 2 wrote it
                          (protocol 2, byte-string names, `_rebuild_tensor`, OrderedDict reduced
                          to a list of pairs, a storage view, a cuda location), checked here by
                          torch.load itself
  py2_expected.safetensors    what torch.load gives for py2_legacy.pth
"""

import struct
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import TransformerNet, image, weights_of  # noqa: E402


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
    # a plain dict: libtorch's zip reader fails on an OrderedDict
    torch.save(dict(state), out / "johnson_zip.pth")
    x = image(1, 3, 40, 36)
    with torch.no_grad():
        save_file({"input": x, "output": net(x)}, out / "johnson_io.safetensors")


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
    johnson_files(out)
    views_files(out)
    py2_files(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), int(sys.argv[2]))
