"""The memory estimate (``nnlab.config.limits``) against the measured peak, config by config.

    python benchmarks/memory_estimate.py

Each case runs in a fresh process: ``data`` cases build the dataset with ``load_data``
(and draw one epoch of a stream); ``model`` cases build the model, take one training
step with Adam and one evaluation batch without gradients. The peak is the growth of
``ru_maxrss`` over the process after its imports. Prints one row per case: what, the
estimate, the measured peak. docs/reliability.md ("Limits before allocation") quotes it.
"""

from __future__ import annotations

import subprocess
import sys

CASES = [
    ("data", "moons", ["data.n_samples=5000000"]),
    ("data", "palindrome", ["data.n_samples=1000000", "data.length=20", "data.one_hot=true"]),
    ("data", "palindrome", ["data.n_samples=1000000", "data.length=11"]),
    (
        "data",
        "palindrome",
        [
            "data.n_samples=100000",
            "data.length=20",
            "data.variant=stream",
            "data.epoch_size=1000000",
        ],
    ),
    ("model", "cnn", []),
    ("model", "cnn", ["train.batch_size=256"]),
    ("model", "seed-cnn", []),
    ("model", "cnn-quick", []),
]

CHILD = """
import resource, sys
import torch
from nnlab.config import load_config
from nnlab.config.limits import data_needs, model_needs
from nnlab.data import load_data
from nnlab.models import build_model

kind, preset, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
cfg = load_config(preset, sets)
torch.set_num_threads(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if kind == "data":
    needs = data_needs(cfg.data)
    bundle = load_data(cfg.data, 0)
    if bundle.train_loader is not None:
        for _ in bundle.train_loader(cfg.train.batch_size, 0, torch.device("cpu")):
            pass
else:
    needs = model_needs(cfg)
    model = build_model(cfg.model, (3, 32, 32), 10)
    opt = torch.optim.Adam(model.parameters())
    b = cfg.train.batch_size
    x, y = torch.randn(b, 3, 32, 32), torch.randint(0, 10, (b,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    with torch.no_grad():
        model.eval()(torch.randn(max(b, 512), 3, 32, 32))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(sum(n.bytes for n in needs) / 1e9, peak / 1e9)
"""


def main() -> None:
    print(f"{'case':<90} {'estimate':>9} {'measured':>9}")
    for kind, preset, sets in CASES:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, kind, preset, *sets],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        what = f"{kind}: {preset} {' '.join(sets)}"
        print(f"{what:<90} {float(out[0]):>6.1f} GB {float(out[1]):>6.1f} GB")


if __name__ == "__main__":
    main()
