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
    # minutes one run of it takes on a 2-core CPU with bf16 (measured: docs/cifar10.md,
    # docs/palindrome.md); printed before --full starts, so a CPU user knows what is coming
    cpu_minutes: float = 0.1


# The course report's experiments (seed-* presets) first, then ours, in report order.
# cpu_minutes per run, from runs on the 2-core bf16 CPU (docs/cifar10.md): seed-cifar-mlp
# 100 epochs in 589 s; cifar-mlp ~17 s an epoch x 150 on a quiet machine; seed-cnn ~47 s an
# epoch x 100; cnn 6.7 s a step x 1519 (quiet) plus 4 TTA evaluations; cnn-cpu 14-15 min;
# palindrome-lengths up to ~1 min a run at T=50.
FULL = [
    Step("seed-moons", "seed-moons", 10, {"model.backend": ["torch", "numpy"]}),
    Step("moons", "moons", 10),
    Step("seed-cifar-mlp", "seed-cifar-mlp", 3, cifar=True, cpu_minutes=10),
    Step("cifar-mlp", "cifar-mlp", 3, cifar=True, cpu_minutes=45),
    Step("seed-cnn", "seed-cnn", 3, cifar=True, cpu_minutes=80),
    Step("cnn", "cnn", 3, cifar=True, cpu_minutes=175),
    Step("cnn-cpu", "cnn-cpu", 3, cifar=True, cpu_minutes=14),
    Step("seed-rnn", "seed-rnn", 10),
    Step("seed-rnn-lengths", "seed-rnn", 3, {"data.length": list(range(3, 12))}),
    Step("palindrome-lengths", "palindrome-lengths", 3, cpu_minutes=1),
]

# Every row of --quick is a preset as it is written (only fewer seeds, lengths or models
# than --full), so each number it shows is what that preset really does: a shortened run
# would show, say, a vanilla RNN at T=11 at 83% where the preset reaches 100% (it did, in
# an earlier version of this list). Presets too long for the budget on 2 cores (the report's
# CIFAR-10 recipes: 10-75 minutes a run) are --full only; cnn-quick, a preset made for
# minutes on a CPU, is the CIFAR-10 part. Measured sizes: docs/report.md.
QUICK = [
    Step("seed-moons", "seed-moons", 5, {"model.backend": ["torch", "numpy"]}),
    Step("moons", "moons", 5),
    Step("cnn-quick", "cnn-quick", 3, cifar=True),
    Step("seed-rnn", "seed-rnn", 5),
    Step("seed-rnn-lengths", "seed-rnn", 3, {"data.length": list(range(3, 12))}),
    Step(
        "palindrome-lengths",
        "palindrome-lengths",
        2,
        {"data.length": [5, 11, 20], "model.name": ["rnn", "lstm", "gru"]},
    ),
]

QUICK_NOTE = (
    "Scale: --quick (sized for about 10 minutes on 2 CPU cores): every experiment runs its preset as written, "
    "with fewer seeds, lengths and models than --full; the report's CIFAR-10 recipes and our long CIFAR-10 "
    "presets are left to `nnlab reproduce --full` (hours on a CPU, see docs/cifar10.md), and cnn-quick "
    "stands in for them."
)
FULL_NOTE = "Scale: --full (every experiment at its preset's own settings)."


def plan(scale: str) -> list[Step]:
    """The experiment list for ``scale`` (quick, full, or smoke: the quick list at a tiny size)."""
    if scale == "full":
        return list(FULL)
    if scale == "quick":
        return list(QUICK)
    if scale == "smoke":  # the quick list and the report's CIFAR-10 recipes, seconds long
        report_cifar = [s for s in FULL if s.key in ("seed-cifar-mlp", "seed-cnn")]
        return [_smoke(s) for s in QUICK + report_cifar]
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
    # three lengths keep a curve; one model of several is enough to exercise the report
    cut = {"data.length": 3, "model.name": 1}
    grid = {k: v[: cut.get(k, len(v))] for k, v in step.grid.items()}
    return dataclasses.replace(step, seeds=min(step.seeds, 2), grid=grid, overrides=over)


# --------------------------------------------------------------------------- CIFAR-10


def cifar_overrides(path: str | None, download: bool = False) -> dict[str, Any] | None:
    """Make CIFAR-10 available; the overrides that select it, or None when it cannot be had.

    ``path`` may be any copy ``nnlab data cifar10 --archive`` takes (the official archive or
    ``cifar-10-batches-py/`` folder, or an ImageFolder tree or .tar.gz of the ten classes,
    such as the JPEG copy in ../shared/datasets): it is imported into the data folder the
    same way, so the presets run as they are (``data.name = "cifar10"``) and a later
    ``nnlab train`` or ``nnlab data info`` sees the same data. A file already imported
    (same path and sha256) is not imported again. Without ``path``, an imported copy is used,
    or with ``download`` one download of the official archive is tried (``_try_download``).
    """
    from nnlab.data.cifar10 import CACHE_NAME, data_root, describe_source, read_cache
    from nnlab.data.cifar10_import import import_cifar10, imported_from

    if path is None:
        if read_cache(data_root() / CACHE_NAME) is not None:
            return {}
        return _try_download() if download else None
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


# One try, kept short: the demo must not hang on a machine without a network.
DOWNLOAD_TIMEOUT_S = 20


def _try_download() -> dict[str, Any] | None:
    """Download and import the official CIFAR-10 archive once (md5-checked, size-capped,
    ``DOWNLOAD_TIMEOUT_S`` per network wait); on failure say in one line how to get it and
    return None, so the caller goes on without CIFAR-10."""
    from nnlab.data.cifar10 import MD5, URL, data_root
    from nnlab.data.cifar10_import import import_cifar10
    from nnlab.data.download import CIFAR10_BYTES, download

    root = data_root()
    print(f"CIFAR-10 is not imported; trying one download from {URL}", file=sys.stderr)
    try:
        archive = download(
            URL,
            root / "downloads" / "cifar-10-python.tar.gz",
            MD5,
            timeout=DOWNLOAD_TIMEOUT_S,
            size=CIFAR10_BYTES,
        )
        import_cifar10(archive, root, origin=URL)
        archive.unlink()
    except DataError as exc:
        print(
            f"CIFAR-10 could not be downloaded ({exc}); going on without it: get it later with "
            "'nnlab data cifar10 --download' or 'nnlab data cifar10 --archive PATH'",
            file=sys.stderr,
        )
        return None
    return {}


# --------------------------------------------------------------------------- running


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (sweep workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cpu_estimate(step: Step, grid: dict[str, list[Any]]) -> float:
    """Minutes ``step`` takes on a 2-core CPU: its runs times the measured minutes of one."""
    runs = step.seeds
    for values in grid.values():
        runs *= len(values)
    return runs * step.cpu_minutes


def _duration(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def run_reproduce(
    scale: str,
    out: Path,
    *,
    cifar10: str | None = None,
    jobs: int = 0,
    steps: list[Step] | None = None,
    download_cifar10: bool = False,
) -> dict[str, Any]:
    """Run every step of ``scale`` into ``out``, then write the report; returns report paths and timings.

    ``jobs`` 0 picks one worker process per core (at most 2: the quick list's sweeps have few settings).
    ``download_cifar10``: when CIFAR-10 is neither imported nor given, try one download of it.
    """
    from nnlab.config import load_config
    from nnlab.experiments.sweep import run_sweep
    from nnlab.reporting.report import write_report
    from nnlab.runs import atomic_write_text

    steps = plan(scale) if steps is None else steps
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    out = Path(out)
    cifar = cifar_overrides(cifar10, download_cifar10) if any(s.cifar for s in steps) else {}
    if cifar is None and not download_cifar10:  # a failed download has said it already
        print(
            "CIFAR-10 is not available, so its experiments are skipped; import it with "
            "'nnlab data cifar10 --archive PATH' (or --download), or pass --cifar10 PATH",
            file=sys.stderr,
        )
    todo = [s for s in steps if not s.cifar or cifar is not None]
    # Validate every config before anything runs: a typo fails in a second, not after an hour.
    configs = [load_config(s.preset, {**s.overrides, **(cifar if s.cifar else {})}) for s in todo]
    grids = [{**cfg.sweep, **step.grid} for step, cfg in zip(todo, configs, strict=True)]
    estimates = [_cpu_estimate(step, grid) for step, grid in zip(todo, grids, strict=True)]
    if sum(estimates) >= 15:
        print(
            f"estimated time on a 2-core CPU with bf16 (measured per preset; a GPU is far "
            f"faster): about {_duration(sum(estimates))} in all; an interrupted run resumes "
            "when the same command is run again",
            file=sys.stderr,
            flush=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    start = time.perf_counter()
    for i, (step, cfg, grid) in enumerate(zip(todo, configs, grids, strict=True), start=1):
        seeds = list(range(cfg.train.seed, cfg.train.seed + step.seeds))
        print(
            f"== [{i}/{len(todo)}] {step.key}: {step.preset}, {step.seeds} seed(s)"
            + (f", grid {', '.join(f'{k}={v}' for k, v in grid.items())}" if grid else "")
            + (
                f" (about {_duration(estimates[i - 1])} on 2 CPU cores)"
                if estimates[i - 1] >= 5
                else ""
            ),
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
