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

``--processes`` times whole processes instead (start-up included, wall clock,
interleaved, a fresh process each time): the report-style script as its own
process (``--report-process``: imports torch and scikit-learn, makes the data
with ``make_moons``, trains with the loop above), ``python -m nnlab train
seed-moons`` into a fresh folder, and two floors both pay before training:
``python -c "import torch, sklearn.datasets"``, and the same plus one
``torch.optim.SGD`` (whose constructor imports ``torch._dynamo``).

    python benchmarks/moons_speed.py --processes [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# nnlab is imported inside the functions that use it: the ``--report-process`` child
# (the report's script) must not pay for importing it.


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
    from nnlab.engine.loop import fit
    from nnlab.engine.setup import seed_everything
    from nnlab.models import build_model

    seed_everything(0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    torch.set_num_threads(1)  # what run_training picks for a model this small
    start = time.perf_counter()
    result = fit(cfg, model, data, torch.device("cpu"), None, progress="off")
    return time.perf_counter() - start, result.history[-1]["test_acc"]


def nnlab_run(cfg) -> float:
    """A whole ``nnlab train`` run: data, model, run folder, checkpoints at every evaluation, curves.png."""
    from nnlab.engine.run import run_training

    with tempfile.TemporaryDirectory() as tmp:
        summary = run_training(cfg, Path(tmp) / "run", progress="off")
    return summary["train_seconds"]


def report_process(epochs: int) -> None:
    """The course report's script as a whole process: scikit-learn's moons, then the loop.

    The data as the report made it and as nnlab makes it (``nnlab.data.toy``):
    ``make_moons(1000, noise=0.2)``, a stratified 80/20 split, standardised with
    training statistics; then ``report_style`` on one thread (the faster setting
    for the report's loop on a busy machine, so the comparison does not flatter nnlab).
    """
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split

    x, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    data = SimpleNamespace(
        x_train=torch.tensor((x_tr - mu) / sd, dtype=torch.float32),
        y_train=torch.tensor(y_tr),
        x_test=torch.tensor((x_te - mu) / sd, dtype=torch.float32),
        y_test=torch.tensor(y_te),
    )
    seconds = report_style(data, epochs, threads=1)
    print(f"report-style loop: {epochs} epochs in {seconds:.2f} s")


def mean(t: list[float]) -> float:
    return statistics.fmean(t)


def time_processes(epochs: int, repeats: int) -> None:
    """Whole processes, wall clock, interleaved (the order rotates each repeat)."""
    here = Path(__file__).resolve()
    floor = "import torch, sklearn.datasets"
    # Both scripts also build a torch.optim optimizer, whose first add_param_group imports
    # torch._dynamo (torch._disable_dynamo): the floor of any torch.optim script.
    optim_floor = floor + "; torch.optim.SGD([torch.zeros(1, requires_grad=True)])"
    variants = {
        "(a) report-style script (`moons_speed.py --report-process`)": lambda _: [
            sys.executable,
            str(here),
            "--report-process",
            "--epochs",
            str(epochs),
        ],
        "(b) `python -m nnlab train seed-moons --out TMP --progress off`": lambda tmp: [
            sys.executable,
            "-m",
            "nnlab",
            "train",
            "seed-moons",
            *([] if epochs == 1500 else ["--set", f"train.epochs={epochs}"]),  # the preset's 1500
            "--out",
            str(Path(tmp) / "run"),
            "--progress",
            "off",
        ],
        f'(c) `python -c "{floor}"` (the floor)': lambda _: [sys.executable, "-c", floor],
        "(d) the same, then `torch.optim.SGD([...])` (the floor with torch.optim)": lambda _: [
            sys.executable,
            "-c",
            optim_floor,
        ],
    }
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with tempfile.TemporaryDirectory() as tmp:  # a fresh run folder each time
                argv = variants[name](tmp)
                start = time.perf_counter()
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
    a, b, c, d = (times[n] for n in names)
    print(f"seed-moons, {epochs} epochs, one seed: whole processes, {repeats} interleaved repeats")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print()
    print("| process | mean s | min s | all runs s |")
    print("|---|---|---|---|")
    for name in names:
        t = times[name]
        runs = ", ".join(f"{x:.2f}" for x in t)
        print(f"| {name} | {mean(t):.2f} | {min(t):.2f} | {runs} |")
    print()
    print(f"(a)/(b): {mean(a) / mean(b):.2f}x by means, {min(a) / min(b):.2f}x by minima")
    for label, f in (("(c)", c), ("(d)", d)):
        print(
            f"beyond the floor {label}: (a) {mean(a) - mean(f):.2f} s, (b) {mean(b) - mean(f):.2f} s "
            f"(means), ratio {(mean(a) - mean(f)) / (mean(b) - mean(f)):.2f}x"
        )
    print(f"best (a)/(b) possible with nnlab at the floor (d) (mean): {mean(a) / mean(d):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--default-threads",
        action="store_true",
        help="also time the report loop at torch's default threads",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="time whole processes (start-up included): the report's script, nnlab train, the import floor",
    )
    parser.add_argument(
        "--report-process",
        action="store_true",
        help="be the report's script (the child --processes times): make the data, train, exit",
    )
    args = parser.parse_args()
    if args.report_process:
        return report_process(args.epochs)
    if args.processes:
        return time_processes(args.epochs, args.repeats)

    from nnlab.config import load_config
    from nnlab.data import load_data

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
