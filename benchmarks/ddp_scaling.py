"""Data-parallel scaling on the CPU: 2 torchrun ranks (DDP, gloo) against 1 process.

Each workload trains the same config three ways, as separate processes:

- ``1 proc x 1 thread``: the baseline (``train.threads=1``);
- ``1 proc x 2 threads``: the other way to spend 2 cores (intra-op threads);
- ``2 ranks x 1 thread``: ``torchrun --standalone --nproc-per-node=2`` (torchrun
  sets ``OMP_NUM_THREADS=1``), same global batch, so the same optimisation.

``train_seconds`` comes from each run's ``summary.json`` (training and
evaluation only: no interpreter start, no torchrun rendezvous). Variants run
interleaved, ``--repeats`` times, and the minimum is kept: on a shared machine
the minimum is the least noisy estimate. The last column checks that 2 ranks
ended on the accuracy of 1 process.

    PYTHONPATH=src python benchmarks/ddp_scaling.py [--workload tiny|wide|all] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (preset, overrides). Global batch sizes are divisible by 2.
WORKLOADS: dict[str, tuple[str, list[str]]] = {
    # The course report's moons MLP (2-20-2): a step is microseconds of math, so
    # DDP's per-step all-reduce and Python overhead dominate.
    "tiny": ("seed-moons", ["train.epochs=100", "train.eval_every=50"]),
    # A wide MLP on 16,000 moons points: ~1.05 M parameters, batch 512, a step is
    # milliseconds of matmuls; the 4 MB gradient all-reduce is small beside it.
    "wide": (
        "moons",
        [
            "data.n_samples=20000",
            "model.hidden=1024,1024",
            "train.batch_size=512",
            "train.epochs=3",
            "train.eval_every=3",
            "schedule.name=none",
        ],
    ),
}
VARIANTS = ("1 proc x 1 thread", "1 proc x 2 threads", "2 ranks x 1 thread")


def run_variant(variant: str, preset: str, overrides: list[str], out: Path) -> dict:
    """Train one run in a fresh process (or torchrun job); returns its summary.json."""
    threads = 2 if variant == "1 proc x 2 threads" else 1
    sets = [
        a
        for kv in [*overrides, f"train.threads={threads}", "train.device=cpu"]
        for a in ("--set", kv)
    ]
    args = ["-m", "nnlab", "train", preset, *sets, "--out", str(out), "--progress", "off"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO / "src")
    if variant.startswith("2 ranks"):
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
        ]
        command = [*launcher, *args]
    else:
        command = [sys.executable, *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]

    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"# load average before: {os.getloadavg()[0]:.2f} (shared machine: other jobs may run)\n")
    print(
        "| workload | variant | train_seconds (min of n) | examples/s | speed-up | final_test_acc |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            preset, overrides = WORKLOADS[name]
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            summaries: dict[str, dict] = {}
            for r in range(args.repeats):
                for variant in VARIANTS:  # interleaved, so a burst of load hits every variant alike
                    out = Path(tmp) / f"{name}-{r}-{variant.replace(' ', '')}"
                    summaries[variant] = run_variant(variant, preset, overrides, out)
                    times[variant].append(summaries[variant]["train_seconds"])
            base = min(times[VARIANTS[0]])
            for variant in VARIANTS:
                s, best = summaries[variant], min(times[variant])
                examples = s["epochs"] * s["n_train"]
                print(
                    f"| {name} | {variant} | {best:.2f} (n={args.repeats}) | {examples / best:,.0f} | "
                    f"{base / best:.2f}x | {s['final_test_acc']:.4f} |",
                    flush=True,
                )
    print(f"\n# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
