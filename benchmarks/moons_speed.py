"""Speed of the seed-moons run: nnlab against a loop written the way the course report wrote it.

Both train the report's make_moons MLP (2-20-2, Sigmoid, SGD lr 1e-2, batch 100)
for the full 1500 epochs on the same data, evaluating on the test set every 10
epochs. The report-style loop uses ``DataLoader(TensorDataset(...), batch_size=100,
shuffle=True)`` (with the report's defects fixed: one mini-batch per step, no
softmax before the loss). nnlab is timed with its default hand-derived MLP step
(nnlab/manual_step.py) and with ``train.manual_step=off`` (autograd and
torch.optim, as every other model trains). All run on one CPU thread, so the ratio measures
per-step overhead, not threading (``--default-threads`` adds the report loop at
torch's default thread count, which on a busy machine can be far slower).

Each variant runs ``--repeats`` times, interleaved, and the minimum wall time is
kept: on a shared machine the minimum is the least noisy estimate.

    python benchmarks/moons_speed.py [--epochs 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.models import build_model
from nnlab.train import fit, run_training, seed_everything


def report_style(data, epochs: int, threads: int) -> float:
    """The report's loop, corrected: DataLoader batches, CrossEntropyLoss on logits."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 20), nn.Sigmoid(), nn.Linear(20, 2))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=100, shuffle=True)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        if epoch % 10 == 0:
            with torch.no_grad():
                logits = model(data.x_test)
                F.cross_entropy(logits, data.y_test).item()
                (logits.argmax(1) == data.y_test).float().mean().item()
    return time.perf_counter() - start


def nnlab_fit(cfg, data) -> tuple[float, float]:
    """nnlab's loop alone (no run folder), with its automatic thread choice."""
    seed_everything(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    torch.set_num_threads(1)  # what run_training picks for a model this small
    start = time.perf_counter()
    result = fit(cfg, model, data, torch.device("cpu"), None, progress="off")
    return time.perf_counter() - start, result.history[-1]["test_acc"]


def nnlab_run(cfg) -> float:
    """A whole ``nnlab train`` run: data, model, run folder, checkpoints at every evaluation, curves.png."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_training(cfg, Path(tmp) / "run", progress="off")
    return summary["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--default-threads",
        action="store_true",
        help="also time the report loop at torch's default threads",
    )
    args = parser.parse_args()

    cfg = load_config("seed-moons", {"train.epochs": args.epochs, "train.device": "cpu"})
    autograd_cfg = cfg.replace({"train.manual_step": "off"})
    data = load_data(cfg.data, 0)
    default_threads = torch.get_num_threads()
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        if args.default_threads:
            times.setdefault(f"report-style loop, {default_threads} threads", []).append(
                report_style(data, args.epochs, default_threads)
            )
        times.setdefault("report-style loop, 1 thread", []).append(
            report_style(data, args.epochs, 1)
        )
        t, acc = nnlab_fit(cfg, data)
        times.setdefault(
            "nnlab fit() (training loop; hand-derived MLP step, the default)", []
        ).append(t)
        t, _ = nnlab_fit(autograd_cfg, data)
        times.setdefault(
            "nnlab fit() with train.manual_step=off (autograd + torch.optim)", []
        ).append(t)
        times.setdefault("nnlab train (loop + run folder, checkpoint per evaluation)", []).append(
            nnlab_run(cfg)
        )
    best = {k: min(v) for k, v in times.items()}
    baseline = min(v for k, v in best.items() if k.startswith("report-style"))
    print(f"seed-moons, {args.epochs} epochs, min of {args.repeats} interleaved repeats")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads available, torch {torch.__version__}"
    )
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print()
    print("| variant | seconds (min) | speed-up vs faster report-style loop |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {baseline / seconds:.2f}x |")
    print(f"\nnnlab final test accuracy (seed 0): {acc:.3f}")


if __name__ == "__main__":
    main()
