"""``nnlab reproduce``: every experiment of the course report, and ours beside it, then the report.

The experiment list is data (``FULL``, ``QUICK``): each entry is a preset, a
grid (on top of the preset's own ``[sweep]``), a number of seeds and, for the
quick scale, overrides that shrink it. Each runs as a sweep into
``OUT/<key>/`` (so a second call skips finished runs and resumes unfinished
ones), and ``nnlab.reporting.report`` then writes ``OUT/report/report.{md,html}``.

``--quick`` is sized for <= 10 minutes on 2 CPU cores: fewer seeds, fewer and
shorter palindromes, CIFAR-10 subsets and one or two epochs. The report lists,
per experiment, every setting that differs from its preset, so a reader sees
the scale. ``smoke`` (hidden; for tests) is the quick list shrunk further.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab.errors import ConfigError, DataError

SCALES = ("quick", "full", "smoke")


@dataclass(frozen=True)
class Step:
    """One experiment: ``nnlab sweep PRESET --grid ... --seeds N --set ...`` into ``OUT/key``."""

    key: str
    preset: str
    seeds: int
    # added to (or replacing keys of) the preset's [sweep]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    cifar: bool = False  # needs CIFAR-10


# The course report's experiments (seed-* presets) first, then ours, in report order.
FULL = [
    Step("seed-moons", "seed-moons", 10, {"model.backend": ["torch", "numpy"]}),
    Step("moons", "moons", 10),
    Step("seed-cifar-mlp", "seed-cifar-mlp", 3, cifar=True),
    Step("cifar-mlp", "cifar-mlp", 3, cifar=True),
    Step("seed-cnn", "seed-cnn", 3, cifar=True),
    Step("cnn", "cnn", 3, cifar=True),
    Step("seed-rnn", "seed-rnn", 10),
    Step("seed-rnn-lengths", "seed-rnn", 3, {"data.length": list(range(3, 12))}),
    Step("palindrome-lengths", "palindrome-lengths", 3),
]

# Why these sizes (measured in docs/report.md): the moons runs are cheap at full length
# (the stacked seeds train together); the vanilla RNN keeps the report's T range but on
# odd lengths, 2,000 sequences and 15 short epochs; CIFAR-10 runs on subsets for 1-3 epochs,
# the small cnn-quick net standing in for our GPU-sized CNN; our LSTM is shown at T=5 and 11.
QUICK = [
    Step("seed-moons", "seed-moons", 3, {"model.backend": ["torch", "numpy"]}),
    Step("moons", "moons", 3),
    Step(
        "seed-cifar-mlp",
        "seed-cifar-mlp",
        2,
        overrides={"data.limit_train": 10000, "data.limit_test": 2000, "train.epochs": 3},
        cifar=True,
    ),
    Step(
        "seed-cnn",
        "seed-cnn",
        1,
        overrides={"data.limit_train": 2000, "data.limit_test": 1000, "train.epochs": 1},
        cifar=True,
    ),
    Step(
        "cnn-quick",
        "cnn-quick",
        1,
        overrides={"data.limit_train": 10000, "data.limit_test": 2000},
        cifar=True,
    ),
    Step("seed-rnn", "seed-rnn", 3),
    Step(
        "seed-rnn-lengths",
        "seed-rnn",
        2,
        {"data.length": [3, 5, 7, 9, 11]},
        # epoch_size: 50 steps an epoch at every length (at T=3 only 100 palindromes exist)
        {"data.n_samples": 2000, "data.epoch_size": 1600, "train.epochs": 15},
    ),
    Step(
        "palindrome-lengths",
        "palindrome-lengths",
        2,
        {"data.length": [5, 11], "model.name": ["lstm"]},
        # 1,000 steps of batch 128: the LSTM reaches ~88% at T=11 after 500 (docs/report.md)
        {"data.n_samples": 4000, "data.epoch_size": 6400, "train.epochs": 20},
    ),
]

QUICK_NOTE = (
    "Scale: --quick (sized for about 10 minutes on 2 CPU cores): fewer seeds, fewer lengths and shorter runs, "
    "CIFAR-10 subsets. Each experiment lists the settings that differ from its preset; `nnlab reproduce --full` "
    "runs everything at the presets' own settings (a GPU is advised for CIFAR-10)."
)
FULL_NOTE = "Scale: --full (every experiment at its preset's own settings)."


def plan(scale: str) -> list[Step]:
    """The experiment list for ``scale`` (quick, full, or smoke: the quick list at a tiny size)."""
    if scale == "full":
        return list(FULL)
    if scale == "quick":
        return list(QUICK)
    if scale == "smoke":
        return [_smoke(s) for s in QUICK]
    raise ConfigError(f"reproduce scale {scale!r}: expected one of {', '.join(SCALES)}")


def _smoke(step: Step) -> Step:
    """The same experiment, a few seconds long: 2 epochs (CIFAR-10: 1), small data, 2 seeds, 3 lengths."""
    over = {**step.overrides, "train.epochs": 2}
    if step.cifar:
        over.update(
            {
                "data.limit_train": 128,
                "data.limit_test": 64,
                "train.batch_size": 64,
                "train.epochs": 1,
            }
        )
    if "palindrome" in step.preset or step.preset == "seed-rnn":
        over.update({"data.n_samples": 300, "data.epoch_size": 256})
    grid = {k: (v[:3] if k == "data.length" else v) for k, v in step.grid.items()}
    return dataclasses.replace(step, seeds=min(step.seeds, 2), grid=grid, overrides=over)


# --------------------------------------------------------------------------- CIFAR-10


def cifar_overrides(path: str | None) -> dict[str, Any] | None:
    """Make CIFAR-10 available; the overrides that select it, or None when it cannot be had.

    ``path`` may be any copy ``nnlab data cifar10 --archive`` takes (the official archive or
    ``cifar-10-batches-py/`` folder, or an ImageFolder tree or .tar.gz of the ten classes,
    such as the JPEG copy in ../shared/datasets): it is imported into the data folder the
    same way, so the presets run as they are (``data.name = "cifar10"``) and a later
    ``nnlab train`` or ``nnlab data info`` sees the same data. A file already imported
    (same path and sha256) is not imported again. Without ``path``, an imported copy is used.
    """
    from nnlab.data.cifar10 import CACHE_NAME, data_root, describe_source, read_cache
    from nnlab.data.cifar10_import import import_cifar10, imported_from

    if path is None:
        return {} if read_cache(data_root() / CACHE_NAME) is not None else None
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"--cifar10 {path}: no such file or folder")
    meta = imported_from(None, source)
    if meta is None:
        meta = import_cifar10(source)
        done = "imported CIFAR-10"
    else:
        done = "CIFAR-10 already imported"
    print(
        f"{done} from {describe_source(meta)}: {meta['n_train']} + {meta['n_test']} images",
        file=sys.stderr,
    )
    return {}


# --------------------------------------------------------------------------- running


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (sweep workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_reproduce(
    scale: str,
    out: Path,
    *,
    cifar10: str | None = None,
    jobs: int = 0,
    steps: list[Step] | None = None,
) -> dict[str, Any]:
    """Run every step of ``scale`` into ``out``, then write the report; returns report paths and timings.

    ``jobs`` 0 picks one worker process per core (at most 2: the quick list's sweeps have few settings).
    """
    from nnlab.config import load_config
    from nnlab.experiments.sweep import run_sweep
    from nnlab.reporting.report import write_report
    from nnlab.runs import atomic_write_text

    steps = plan(scale) if steps is None else steps
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    out = Path(out)
    cifar = cifar_overrides(cifar10) if any(s.cifar for s in steps) else {}
    if cifar is None:
        print(
            "CIFAR-10 is not available, so its experiments are skipped; import it with "
            "'nnlab data cifar10 --archive PATH' (or --download), or pass --cifar10 PATH",
            file=sys.stderr,
        )
    todo = [s for s in steps if not s.cifar or cifar is not None]
    # Validate every config before anything runs: a typo fails in a second, not after an hour.
    configs = [load_config(s.preset, {**s.overrides, **(cifar if s.cifar else {})}) for s in todo]
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    start = time.perf_counter()
    for i, (step, cfg) in enumerate(zip(todo, configs, strict=True), start=1):
        grid = {**cfg.sweep, **step.grid}
        seeds = list(range(cfg.train.seed, cfg.train.seed + step.seeds))
        print(
            f"== [{i}/{len(todo)}] {step.key}: {step.preset}, {step.seeds} seed(s)"
            + (f", grid {', '.join(f'{k}={v}' for k, v in grid.items())}" if grid else ""),
            file=sys.stderr,
            flush=True,
        )
        t0, c0 = time.perf_counter(), _cpu_seconds()
        run_sweep(cfg, grid, seeds, out / step.key, jobs=jobs)
        timings.append(
            {"step": step.key, "wall_s": time.perf_counter() - t0, "cpu_s": _cpu_seconds() - c0}
        )
    total = time.perf_counter() - start
    # One row per step and call, appended: a rerun that skips finished runs keeps the first timings.
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows = [f"{stamp},{scale},{t['step']},{t['wall_s']:.1f},{t['cpu_s']:.1f}" for t in timings]
    path = out / "timings.csv"
    before = (
        path.read_text(encoding="utf-8") if path.is_file() else "started,scale,step,wall_s,cpu_s\n"
    )
    atomic_write_text(path, before + "\n".join(rows) + "\n")
    note = {"quick": QUICK_NOTE, "full": FULL_NOTE}.get(
        scale, f"Scale: {scale} (a test-sized run)."
    )
    if cifar is None:
        note += " CIFAR-10 was not available, so its experiments were not run ('nnlab data cifar10 --archive PATH')."
    t0 = time.perf_counter()
    report = write_report([out / s.key for s in todo], out / "report", note=note)
    timings.append({"step": "report", "wall_s": time.perf_counter() - t0, "cpu_s": 0.0})
    return {
        **report,
        "timings": timings,
        "wall_s": time.perf_counter() - start,
        "train_wall_s": total,
    }
