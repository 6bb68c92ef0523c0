"""CPU training speed of the report's CNN (seed-cnn, batch 32): nnlab against a report-style loop.

    python benchmarks/cifar_cpu.py [--steps 40] [--rounds 3] [--data-dir DIR] [--rss-steps 300]

Both loops train the same model (the course report's reduced VGG, 3,477,066
parameters) with Adam(5e-4, wd 1e-3) at batch 32, in one process, interleaved
round by round so a shared machine's load hits both alike; the median
images/second of each is reported with the ratio.

- report-style: a DataLoader over a TensorDataset of float32 NCHW tensors
  (shuffle=True), eager model, ``loss.item()`` and accuracy read every step,
  torch.optim.Adam with its CPU default (a Python loop over parameters).
- nnlab: uint8 images resident, batches sliced after one gather per epoch and
  normalised per batch (``TensorLoader`` + ``ImageTransform``), the fused Adam
  that ``build_optimizer`` picks, metrics kept on the device
  (``train_one_epoch``) with its defaults (``auto``: bf16 autocast and
  channels_last on CPUs with native bf16 units, off on others), and with both
  forced off and forced on.

``--rss-steps`` then runs, in a fresh process, a full-size run of seed-cnn's
model (all 50,000 training images resident) for that many steps plus a full
test-set evaluation, and prints its peak resident memory (``getrusage``).
Uses the cached CIFAR-10 when ``--data-dir`` (or $NNLAB_DATA) holds one,
random images of the same size otherwise: speed does not depend on pixels.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnlab.config import load_config
from nnlab.data import DataBundle
from nnlab.engine.loaders import make_loaders
from nnlab.engine.loop import evaluate, train_one_epoch
from nnlab.engine.optim import build_optimizer
from nnlab.engine.setup import speed_settings
from nnlab.engine.steps import AutogradStep
from nnlab.models import build_model


def get_data(data_dir: str | None) -> tuple[DataBundle, str]:
    """The cached CIFAR-10 if there is one, else random uint8 images of the same shapes."""
    from nnlab.data import load_data
    from nnlab.errors import DataError

    try:
        cfg = load_config("seed-cnn", [f"data.dir={data_dir}"] if data_dir else [])
        return load_data(cfg.data, 0), "cached CIFAR-10"
    except DataError:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (60_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (60_000,), generator=g)
        bundle = DataBundle(x[:50_000], y[:50_000], x[50_000:], y[50_000:], 10, (3, 32, 32))
        bundle.normalization = ([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
        return bundle, "random images (no CIFAR-10 cache found)"


def report_style(data: DataBundle, steps: int) -> float:
    """Images/second of a loop written the way the report wrote it."""
    mean = torch.tensor(data.normalization[0]).view(1, 3, 1, 1)
    std = torch.tensor(data.normalization[1]).view(1, 3, 1, 1)
    x = (data.x_train.float() / 255 - mean) / std  # float32 NCHW, the whole set: 614 MB
    loader = DataLoader(TensorDataset(x, data.y_train), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    model = build_model(load_config("seed-cnn").model, (3, 32, 32), 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = 0.0
    for i, (xb, yb) in enumerate(itertools.islice(loader, steps + 3)):
        if i == 3:  # the first steps warm up allocators and kernels
            start = time.perf_counter()
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _ = loss.item(), (out.argmax(1) == yb).float().mean().item()  # per-step logging
    return 32 * steps / (time.perf_counter() - start)


def nnlab_style(data: DataBundle, steps: int, overrides: list[str]) -> float:
    """Images/second of nnlab's loop (``make_loaders`` + ``train_one_epoch``) for ``steps`` steps."""
    cfg = load_config("seed-cnn", ["train.device=cpu", *overrides])
    device = torch.device("cpu")
    train_loader, _ = make_loaders(cfg, data, device)
    torch.manual_seed(0)
    model = build_model(cfg.model, (3, 32, 32), 10)
    amp, channels_last = speed_settings(cfg, device, (3, 32, 32))  # what fit() would pick
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    train_loader.set_epoch(1)
    warm = list(itertools.islice(iter(train_loader), 3))
    step = AutogradStep(model, model, optimizer, amp=amp)
    train_one_epoch(step, warm)
    batches = itertools.islice(iter(train_loader), steps)
    start = time.perf_counter()
    train_one_epoch(step, batches)  # includes the per-epoch gather
    return 32 * steps / (time.perf_counter() - start)


def rss_run(steps: int, data_dir: str | None) -> None:
    """A full-size run's peak memory: 50k images resident, ``steps`` steps, full test evaluation."""
    data, source = get_data(data_dir)
    cfg = load_config("seed-cnn", ["train.device=cpu"])
    train_loader, test_loader = make_loaders(cfg, data, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg.model, (3, 32, 32), 10)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    train_loader.set_epoch(1)
    start = time.perf_counter()
    train_one_epoch(
        AutogradStep(model, model, optimizer), itertools.islice(iter(train_loader), steps)
    )
    acc = evaluate(model, test_loader)["acc"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    print(
        f"peak RSS {peak:.2f} GiB: seed-cnn model, {len(data.y_train)} train images resident ({source}), "
        f"{steps} steps of 32 + evaluation of {len(data.y_test)} test images in {time.perf_counter() - start:.0f} s "
        f"(test acc {acc:.3f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per loop per round")
    ap.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; the median is reported"
    )
    ap.add_argument("--data-dir", help="data folder holding the CIFAR-10 cache")
    ap.add_argument("--rss-steps", type=int, default=300, help="steps of the memory run (0 = skip)")
    ap.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_only:
        rss_run(args.rss_steps, args.data_dir)
        return
    data, source = get_data(args.data_dir)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {' '.join(load)}; data: {source}"
    )
    variants = {
        "report-style (DataLoader, float32)": lambda: report_style(data, args.steps),
        "nnlab (defaults: amp/channels_last auto)": lambda: nnlab_style(data, args.steps, []),
        "nnlab, float32 NCHW (amp, channels_last off)": lambda: nnlab_style(
            data, args.steps, ["train.channels_last=off", "train.amp=off"]
        ),
        "nnlab + channels_last + bf16 amp (forced on)": lambda: nnlab_style(
            data, args.steps, ["train.channels_last=on", "train.amp=on"]
        ),
    }
    results: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            results[name].append(fn())
            print(f"  round {r + 1}: {name}: {results[name][-1]:.1f} img/s", flush=True)
    base = statistics.median(results["report-style (DataLoader, float32)"])
    for name, values in results.items():
        med = statistics.median(values)
        spread = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:36s} {med:7.1f} img/s  ({spread})  ratio {med / base:.2f}x")
    if args.rss_steps:
        cmd = [sys.executable, __file__, "--rss-only", "--rss-steps", str(args.rss_steps)]
        subprocess.run(cmd + (["--data-dir", args.data_dir] if args.data_dir else []), check=True)


if __name__ == "__main__":
    sys.exit(main())
