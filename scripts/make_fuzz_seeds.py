"""Writes the torch.save files the fuzz seeds and the foreign-code tests use, with the project's
torch: tests/fixtures/fuzz/*.pth (small real state dicts and a checkpoint, zip and legacy
formats) and tests/fixtures/foreign_code/*.pth (pickles that run a command when torch.load
unpickles them with weights_only=False). Run from the repository root:

    .venv/bin/python scripts/make_fuzz_seeds.py

Each armed file is proven armed here: torch.load(weights_only=False) in a temporary folder
must create the file its command touches.
"""

import builtins
import collections
import os
import pathlib
import subprocess
import sys
import tempfile

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "tests" / "fixtures" / "fuzz"
FOREIGN = ROOT / "tests" / "fixtures" / "foreign_code"


def state_dict():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3)
    shared = torch.randn(10)
    return collections.OrderedDict(
        [
            ("conv1.conv2d.weight", torch.nn.Parameter(weight)),
            ("conv1.conv2d.bias", torch.randn(4).half()),
            ("in1.weight", torch.randn(4).bfloat16()),
            ("in1.running_mean", shared[2:6]),  # a view into a shared storage
            ("in1.running_var", shared[::2]),  # strided
            ("in1.num_batches_tracked", torch.tensor(7)),
            ("res1.conv1.conv2d.weight", torch.randn(2, 2, 1, 1).double()),
            ("mask", torch.tensor([True, False, True])),
        ]
    )


def save(obj, path, legacy=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


class RunsCommand:
    """Unpickles as os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvaluatesCode:
    """Unpickles as builtins.eval(code)."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def armed(marker):
    sd = state_dict()
    sd["conv1.conv2d.weight"] = RunsCommand(f"touch {marker}")
    return sd


def prove_armed(path, marker):
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import torch; torch.load({str(path)!r}, weights_only=False)",
            ],
            cwd=cwd,
            check=False,
            capture_output=True,
        )
        assert (pathlib.Path(cwd) / marker).exists(), f"{path} did not run its command"


def main():
    sd = state_dict()
    save(sd, SEEDS / "state_dict.pth")
    save(sd, SEEDS / "state_dict_legacy.pth", legacy=True)
    checkpoint = {"epoch": 3, "state_dict": sd, "optimizer": {"lr": 1e-3, "betas": (0.9, 0.999)}}
    save(checkpoint, SEEDS / "checkpoint.pth")
    save(checkpoint, SEEDS / "checkpoint_legacy.pth", legacy=True)

    marker = "atelier-ran-foreign-code"
    save(armed(marker), FOREIGN / "os_system.pth")
    prove_armed(FOREIGN / "os_system.pth", marker)
    evil = state_dict()
    evil["conv1.conv2d.weight"] = EvaluatesCode(f"open({marker!r}, 'w')")
    save(evil, FOREIGN / "builtins_eval_legacy.pth", legacy=True)
    prove_armed(FOREIGN / "builtins_eval_legacy.pth", marker)


if __name__ == "__main__":
    main()
