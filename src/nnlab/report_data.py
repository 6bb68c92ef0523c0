"""Reading what ``nnlab report`` reports: finished run folders and sweep folders' ``results.csv``.

A run folder is finished iff its ``summary.json`` exists. Anything that is not
what it claims to be raises ``RunError`` with one line naming the path; runs
that are merely unfinished inside a sweep are skipped with a notice instead.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab.errors import RunError
from nnlab.runs import read_json, read_metrics

# The contract's results.csv columns a report needs (swept keys come between run and seed).
RESULT_COLUMNS = ("run", "seed", "final_test_acc", "best_test_acc", "train_seconds")


@dataclass
class Run:
    """One finished run folder: its resolved config (as a dict), summary and metrics rows."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    point: dict[str, str]  # swept key -> value, from results.csv ({} for a lone run)

    @property
    def ok(self) -> bool:
        return self.summary.get("final_test_acc") is not None

    def history(self) -> list[dict[str, float]]:
        return read_metrics(self.path / "metrics.csv")


@dataclass
class Experiment:
    """One run folder or sweep folder, grouped by setting (the swept keys' values)."""

    path: Path
    keys: list[str]
    runs: list[Run]
    preset: str = ""
    description: str = ""
    groups: dict[tuple, list[Run]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        first = self.runs[0]
        self.preset = str(first.summary.get("preset") or first.config.get("name") or self.path.name)
        self.description = str(first.config.get("description", ""))
        for run in self.runs:
            self.groups.setdefault(tuple(run.point.get(k, "") for k in self.keys), []).append(run)

    def label(self, values: tuple) -> str:
        return (
            "  ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(self.keys, values, strict=True))
            or "all seeds"
        )


def read_run(path: Path, point: dict[str, str] | None = None) -> Run:
    """A finished run folder; RunError (one line naming the file) if it is not one."""
    cfg_path, summary_path = path / "config.toml", path / "summary.json"
    if not cfg_path.is_file():
        raise RunError(f"{path}: not an nnlab run folder (no config.toml)")
    if not summary_path.is_file():
        raise RunError(
            f"{path}: half-finished run (no summary.json yet); finish it with 'nnlab resume {path}'"
        )
    try:
        config = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RunError(f"{cfg_path}: not a readable config ({exc})") from None
    if not all(isinstance(config.get(s), dict) for s in ("data", "model", "optim", "train")):
        raise RunError(f"{cfg_path}: not an nnlab config (needs [data], [model], [optim], [train])")
    if not (path / "metrics.csv").is_file():
        raise RunError(f"{path}: finished run without metrics.csv")
    return Run(path, config, read_json(summary_path), dict(point or {}))


def read_results(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A sweep's ``results.csv``: (swept keys, rows); RunError if columns are missing."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunError(f"{path}: cannot read results ({exc})") from None
    missing = [c for c in RESULT_COLUMNS if c not in columns]
    if missing:
        raise RunError(
            f"{path}: missing column(s) {', '.join(missing)}; results.csv needs {', '.join(RESULT_COLUMNS)}"
        )
    keys = [c for c in columns if "." in c]  # swept keys are dotted config keys, e.g. data.length
    return keys, rows


def read_sweep(path: Path, notices: list[str]) -> Experiment | None:
    """A sweep (or ``--seeds N``) folder; half-finished runs are skipped with a notice."""
    keys, rows = read_results(path / "results.csv")
    runs, listed = [], set()
    for row in rows:
        listed.add(row["run"])
        folder = path / row["run"]
        if not (folder / "summary.json").is_file():
            notices.append(f"skipped {folder}: listed in results.csv but has no summary.json")
            continue
        runs.append(read_run(folder, {k: row[k] for k in keys}))
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and p.name not in listed):
        if (folder / "config.toml").is_file() and not (folder / "summary.json").is_file():
            notices.append(
                f"skipped half-finished run {folder} (no summary.json; rerun the sweep to finish it)"
            )
    if not runs:
        notices.append(f"skipped {path}: no finished runs in results.csv")
        return None
    return Experiment(path, keys, runs)


def collect_folders(dirs: list[Path]) -> tuple[list[Experiment], list[str]]:
    """Every experiment under ``dirs`` (run folders, sweep folders, or folders holding them).

    Returns the experiments and notices (half-finished runs skipped). A folder
    that is none of these, or nothing finished at all, raises RunError.
    """
    experiments: list[Experiment] = []
    notices: list[str] = []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise RunError(f"{d}: no such folder (give run or sweep folders)")
        if (d / "results.csv").is_file() or (d / "config.toml").is_file():
            found = [d]
        else:  # a folder of run/sweep folders, e.g. what `nnlab reproduce --out` writes
            found = [
                c
                for c in sorted(d.iterdir())
                if c.is_dir() and ((c / "results.csv").is_file() or (c / "config.toml").is_file())
            ]
            if not found:
                raise RunError(
                    f"{d}: not an nnlab run or sweep folder (no config.toml or results.csv, nor folders with them)"
                )
        for f in found:
            if (f / "results.csv").is_file():
                exp = read_sweep(f, notices)
            elif not (f / "summary.json").is_file():
                notices.append(
                    f"skipped half-finished run {f} (no summary.json; 'nnlab resume {f}' finishes it)"
                )
                exp = None
            else:
                run = read_run(f)
                exp = Experiment(f, [], [run])
            if exp is not None:
                experiments.append(exp)
    if not experiments:
        raise RunError(
            f"{', '.join(map(str, dirs))}: nothing finished to report ({'; '.join(notices) or 'no runs'})"
        )
    return experiments, notices
