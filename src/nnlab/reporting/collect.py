"""The experiments ``nnlab report`` reports: finished run folders and sweep folders, read
through ``nnlab.runs.RunFolder`` / ``SweepFolder``.

A run folder is finished iff its ``summary.json`` exists. Anything that is not
what it claims to be raises ``RunError`` with one line naming the path; runs
that are merely unfinished inside a sweep are skipped with a notice instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nnlab.errors import RunError
from nnlab.reporting.course import part_of
from nnlab.runs import RunFolder, SweepFolder


@dataclass
class Experiment:
    """One run folder or sweep folder, its finished runs grouped by setting (the swept keys' values)."""

    path: Path
    keys: list[str]
    runs: list[RunFolder]
    preset: str = ""
    description: str = ""
    groups: dict[tuple, list[RunFolder]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        first = self.runs[0]
        self.preset = first.preset or str(first.config.get("name") or self.path.name)
        self.description = str(first.config.get("description", ""))
        for run in self.runs:
            self.groups.setdefault(tuple(run.point.get(k, "") for k in self.keys), []).append(run)

    def label(self, values: tuple) -> str:
        pairs = zip(self.keys, values, strict=True)
        return "  ".join(f"{k.split('.')[-1]}={v}" for k, v in pairs) or "all seeds"


def finished_run(run: RunFolder) -> RunFolder:
    """``run`` if it is a finished run folder; RunError (one line naming the file) if not."""
    _ = run.config  # a one-line RunError if config.toml is missing or not an nnlab config
    if not run.finished:
        raise RunError(
            f"{run.path}: half-finished run (no summary.json yet); "
            f"finish it with 'nnlab resume {run.path}'"
        )
    _ = run.summary  # a one-line RunError if summary.json is not valid JSON
    if not (run.path / "metrics.csv").is_file():
        raise RunError(f"{run.path}: finished run without metrics.csv")
    return run


def read_sweep(path: Path, notices: list[str]) -> Experiment | None:
    """A sweep (or ``--seeds N``) folder; half-finished runs are skipped with a notice."""
    sweep = SweepFolder(path)
    keys, listed, runs = sweep.keys, sweep.listed, []
    for run in listed:
        if run.finished:
            runs.append(finished_run(run))
        else:
            notices.append(f"skipped {run.path}: listed in results.csv but has no summary.json")
    names = {r.path.name for r in listed}
    for run in sweep.runs:
        if run.path.name not in names and not run.finished:
            notices.append(
                f"skipped half-finished run {run.path} (no summary.json; rerun the sweep to finish it)"
            )
    if not runs:
        notices.append(f"skipped {path}: no finished runs in results.csv")
        return None
    return Experiment(path, keys, runs)


def _is_experiment(folder: Path) -> bool:
    return (folder / "results.csv").is_file() or (folder / "config.toml").is_file()


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
        # else a folder of run/sweep folders, e.g. what `nnlab reproduce --out` writes
        found = [d] if _is_experiment(d) else [c for c in sorted(d.iterdir()) if _is_experiment(c)]
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
                exp = Experiment(f, [], [finished_run(RunFolder(f))])
            if exp is not None:
                experiments.append(exp)
    if not experiments:
        raise RunError(
            f"{', '.join(map(str, dirs))}: nothing finished to report ({'; '.join(notices) or 'no runs'})"
        )
    return experiments, notices


def collect(dirs: list[Path]) -> tuple[list[Experiment], list[str]]:
    """Every experiment under ``dirs`` (``collect_folders``), in the course report's order."""
    experiments, notices = collect_folders(dirs)
    experiments.sort(key=lambda e: (part_of(e.runs[0].config)[0], not e.preset.startswith("seed-")))
    return experiments, notices
