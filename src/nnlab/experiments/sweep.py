"""Sweeps: a grid of config overrides x seeds, one run folder each, and ``results.csv``.

A sweep folder holds one run folder per (grid point, seed), named after its
overrides, and ``results.csv`` with one row per finished run (the contract
columns: ``run``, every swept key by its dotted name, ``seed``,
``final_test_acc``, ``best_test_acc``, ``train_seconds``). A run counts as
finished only when its ``summary.json`` exists, so rerunning a sweep skips
finished runs and redoes unfinished ones. Where the runs train (this process or
worker processes) is ``backends.py``.
"""

from __future__ import annotations

import csv
import io
import itertools
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnlab.config import Config
from nnlab.config_values import coerce
from nnlab.errors import ConfigError, NnlabError, RunError
from nnlab.experiments.backends import group_runs, run_local
from nnlab.reporting.stats import format_summary, mean_std, summarize
from nnlab.runs import RunDir, atomic_write_text, prepare_out_dir, read_json

RESULT_COLUMNS = ["final_test_acc", "best_test_acc", "final_test_loss", "epochs", "train_seconds"]


def parse_grid_arg(text: str, cfg: Config) -> tuple[str, list[Any]]:
    """``"optim.lr=1e-3,1e-2"`` or ``"data.length=3..11"`` -> (key, typed values)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not values.strip():
        raise ConfigError(f"--grid {text!r}: expected key=v1,v2,... or key=a..b")
    cfg.get(key)  # raises ConfigError for an unknown key
    if ".." in values:
        lo, _, hi = values.partition("..")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise ConfigError(f"--grid {text!r}: a range a..b takes integers") from None
        if b < a:
            raise ConfigError(f"--grid {text!r}: empty range {a}..{b}")
        return key, list(range(a, b + 1))
    return key, [v.strip() for v in values.split(",")]


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of every key's values, in order, as override dicts."""
    keys = list(grid)
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
    ]


def run_name(point: dict[str, Any], seed: int) -> str:
    parts = [f"{k}={_short(v)}" for k, v in point.items()]
    return "__".join([*parts, f"seed={seed}"])


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(_short(v) for v in value)
    return str(value).replace("/", "_").replace(" ", "")


def plan(
    cfg: Config, grid: dict[str, list[Any]], seeds: Sequence[int]
) -> list[tuple[str, Config, dict[str, Any]]]:
    """Validate every grid point up front, so a bad value fails before any run starts."""
    jobs = []
    for point in expand_grid(grid):
        typed = {}
        for key, value in point.items():
            section, field_name = key.split(".")
            tp = typing.get_type_hints(type(getattr(cfg, section)))[field_name]
            typed[key] = coerce(key, value, tp)
        for seed in seeds:
            run_cfg = cfg.replace({**typed, "train.seed": seed})
            jobs.append((run_name(typed, seed), run_cfg, typed))
    return jobs


def run_sweep(
    cfg: Config,
    grid: dict[str, list[Any]],
    seeds: Sequence[int],
    out: Path,
    *,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run every (grid point, seed) not finished yet; write ``results.csv``; return its rows."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and (out / "summary.json").exists():
        raise RunError(f"--out {out}: is a single run, not a sweep folder")
    prepare_sweep_dir(out)
    planned = plan(cfg, grid, seeds)
    keys = list(grid)
    todo = [(n, c) for n, c, _ in planned if not RunDir(out / n).finished]
    skipped = len(planned) - len(todo)
    out.mkdir(parents=True, exist_ok=True)
    if skipped:
        print(
            f"{skipped} of {len(planned)} runs already finished in {out}; skipping them",
            file=sys.stderr,
        )
    done = skipped
    start = time.perf_counter()

    def report(name: str, summary: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        acc = summary.get("final_test_acc")
        result = (
            f"final_test_acc {acc:.4f}" if acc is not None else f"FAILED: {summary.get('error')}"
        )
        print(
            f"[{done}/{len(planned)}] {name}: {result} ({summary['train_seconds']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        write_results(out, planned, keys)

    # runs that differ only in seed train together, as one stack
    run_local(group_runs(todo), out, jobs, report)
    rows = write_results(out, planned, keys)
    write_summary_table(out, rows, keys)
    from nnlab.reporting.plots import plot_sweep_boundaries, plot_sweep_metric
    from nnlab.runs import SweepFolder

    plot_sweep_boundaries(SweepFolder(out))  # runs with boundary.npz: each setting's boundary
    # numeric swept keys (e.g. data.length): accuracy_vs_<key>.png
    plot_sweep_metric(SweepFolder(out))
    print(
        f"sweep finished: {len(planned)} runs in {out} ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    return rows


def prepare_sweep_dir(out: Path) -> None:
    if out.is_dir() and any(out.iterdir()) and not (out / "results.csv").exists():
        # A folder of run folders without results.csv yet (first run interrupted) is fine.
        entries = [p for p in out.iterdir() if not p.name.startswith(".")]
        if any(not (p.is_dir() and (p / "config.toml").exists()) for p in entries):
            raise RunError(f"--out {out}: folder is not empty and is not an nnlab sweep")
    if not out.exists():
        prepare_out_dir(out)


def write_results(out: Path, planned, keys: list[str]) -> list[dict[str, Any]]:
    """Rewrite ``results.csv`` (atomically) from the summaries of every finished run."""
    rows = []
    for name, run_cfg, point in planned:
        summary_path = out / name / "summary.json"
        if not summary_path.exists():
            continue
        summary = read_json(summary_path)
        row = {"run": name, **{k: _csv_value(point[k]) for k in keys}, "seed": run_cfg.train.seed}
        row.update({c: summary.get(c) for c in RESULT_COLUMNS})
        rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["run", *keys, "seed", *RESULT_COLUMNS], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    return rows


def _csv_value(value: Any) -> Any:
    return ",".join(str(v) for v in value) if isinstance(value, list) else value


def write_summary_table(out: Path, rows: list[dict[str, Any]], keys: list[str]) -> Path:
    """``summary.md``: per grid point, mean +- std (n) of final_test_acc and of train seconds."""
    head = [*keys, "final_test_acc", "train_seconds", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in summarize(rows, keys):
        members = [
            r
            for r in rows
            if all(r[k] == entry[k] for k in keys) and r.get("final_test_acc") not in (None, "")
        ]
        s_mean, s_std, _ = mean_std([float(r["train_seconds"]) for r in members])
        failed = f" ({entry['failed']} diverged)" if entry.get("failed") else ""
        cells = [
            *(str(entry[k]) for k in keys),
            f"{entry['mean']:.4f} +- {entry['std']:.4f}",
            f"{s_mean:.2f} +- {s_std:.2f}",
            f"{entry['n']}{failed}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "mean +- sample std over seeds; train_seconds is per run (a stacked run's share of its stack)\n\n"
    atomic_write_text(out / "summary.md", text + "\n".join(lines) + "\n")
    return out / "summary.md"


__all__ = [
    "run_sweep",
    "parse_grid_arg",
    "expand_grid",
    "summarize",
    "format_summary",
    "mean_std",
    "NnlabError",
]
