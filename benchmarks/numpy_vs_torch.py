"""Time the numpy-vs-torch sweep (target: 60 runs, 10 seeds, <= 60 s on 2 cores) and each backend's step.

    .venv/bin/python benchmarks/numpy_vs_torch.py                 # step costs, then the whole sweep (--jobs 1)
    .venv/bin/python benchmarks/numpy_vs_torch.py --jobs 1 2      # the sweep once per --jobs value
    .venv/bin/python benchmarks/numpy_vs_torch.py --steps-only    # only the per-step table (about a minute)

Step costs are measured in this one process, one after another, so compare them
as ratios: on a shared machine the absolute numbers move with the load. The
sweep runs as a user runs it (a fresh ``python -m nnlab sweep`` process, so
interpreter start and imports count) into a temporary folder; its summary.md
table is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.engine.loop import fit
from nnlab.engine.run import stack_data
from nnlab.engine.setup import seed_everything, set_cpu_threads
from nnlab.models import build_model
from nnlab.models.stacked import StackedMLP
from nnlab.numpy_mlp.fit import fit_stacked, to_arrays

PRESET = "numpy-vs-torch"


def step_costs(epochs: int, seeds: int) -> list[tuple[str, float, int]]:
    """``(label, microseconds per optimizer step, networks per step)`` for each way of training."""

    def cfg(backend, seed):
        return load_config(
            PRESET,
            [
                f"model.backend={backend}",
                f"train.epochs={epochs}",
                f"train.seed={seed}",
                "train.device=cpu",
            ],
        )

    out = []
    for backend in ("numpy", "torch"):
        cfgs = [cfg(backend, s) for s in range(seeds)]
        bundles = []
        for c in cfgs:
            seed_everything(c.train.seed)
            bundles.append(load_data(c.data, c.train.seed))
        steps = epochs * -(-len(bundles[0].y_train) // cfgs[0].train.batch_size)
        for label, n_net in ((f"{backend} alone", 1), (f"{backend} stack of {seeds}", seeds)):
            best = float("inf")
            for _ in range(2):  # the faster of two: less noise from other processes
                start = time.perf_counter()
                if backend == "numpy":
                    fit_stacked(cfgs[:n_net], [to_arrays(b) for b in bundles[:n_net]])
                elif n_net == 1:  # the torch backend's own loop, nnlab.engine.loop.fit
                    seed_everything(0)
                    model = build_model(cfgs[0].model, bundles[0].input_shape, bundles[0].n_classes)
                    # as run_training does
                    set_cpu_threads(0, sum(p.numel() for p in model.parameters()))
                    fit(cfgs[0], model, bundles[0], torch.device("cpu"), progress="off")
                else:
                    models = []
                    for c, b in zip(cfgs, bundles, strict=True):
                        seed_everything(c.train.seed)
                        models.append(build_model(c.model, b.input_shape, b.n_classes))
                    stack = StackedMLP(models, cfgs[0].model.activation)
                    data = stack_data(bundles, [c.train.seed for c in cfgs])
                    fit(cfgs[0], stack, data, torch.device("cpu"), progress="off")
                best = min(best, time.perf_counter() - start)
            out.append((label, best / steps * 1e6, n_net))
    return out


def time_sweep(seeds: int, jobs: int) -> tuple[float, float, Path]:
    """Wall seconds and CPU seconds (user + system, all its processes) of one whole sweep.

    On a machine shared with other work the wall time measures the load as much
    as nnlab; the CPU time is what the sweep itself costs, and on an idle
    machine a ``--jobs 1`` sweep's wall time is about its CPU time.
    """
    out = Path(tempfile.mkdtemp(prefix="nnlab-bench-")) / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "nnlab",
        "sweep",
        PRESET,
        "--seeds",
        str(seeds),
        "--jobs",
        str(jobs),
        "--out",
        str(out),
    ]
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, cpu, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--jobs", type=int, nargs="+", default=[1])
    p.add_argument("--step-epochs", type=int, default=30, help="epochs per step-cost measurement")
    p.add_argument("--steps-only", action="store_true")
    p.add_argument("--sweep-only", action="store_true")
    args = p.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  cpus={os.cpu_count()}  load={os.getloadavg()[0]:.1f}  torch {torch.__version__}"
    )
    if not args.sweep_only:
        costs = step_costs(args.step_epochs, args.seeds)
        torch_alone = next(us for label, us, _ in costs if label == "torch alone")
        print(
            f"\nper-step cost ({PRESET} on moons, batch 100, {args.step_epochs} epochs each; best of 2)"
        )
        print(f"{'':22} {'us/step':>9} {'us/network-step':>16} {'vs torch alone':>15}")
        for label, us, n_net in costs:
            print(f"{label:22} {us:9.0f} {us / n_net:16.0f} {torch_alone / (us / n_net):14.1f}x")
    if args.steps_only:
        return
    for jobs in args.jobs:
        seconds, cpu, out = time_sweep(args.seeds, jobs)
        n_runs = len((out / "results.csv").read_text().splitlines()) - 1
        print(
            f"\nnnlab sweep {PRESET} --seeds {args.seeds} --jobs {jobs}: {n_runs} runs in {seconds:.1f} s wall, {cpu:.1f} s CPU "
            f"(target <= 60 s; load now {os.getloadavg()[0]:.1f})  -> {out}"
        )
        print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
