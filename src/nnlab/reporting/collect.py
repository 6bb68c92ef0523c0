"""The experiments ``nnlab report`` reports: finished run folders and sweep folders, found at
any depth under the folders given, read through ``nnlab.runs.RunFolder`` / ``SweepFolder``.

A run folder is finished iff its ``summary.json`` exists. Runs that are merely
unfinished are left out of the tables and listed as such (``unfinished: PATH (epoch k
of N)``); a run or sweep folder that cannot be read (a file that does not follow its
schema: ``nnlab.runs.read``) is skipped and listed too (``skipped: PATH: what is wrong``),
and the rest is still reported. Only when nothing is left is it an error (one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nnlab.errors import RunError
from nnlab.reporting.course import part_of
from nnlab.runs import RunFolder, SweepFolder
from nnlab.runs.read import run_progress
from nnlab.runs.tune_folder import TuneFolder, is_tune_folder


@dataclass
class Experiment:
    """One run folder or sweep folder, its finished runs grouped by setting (the swept keys' values)."""

    path: Path
    keys: list[str]
    runs: list[RunFolder]
    preset: str = ""
    description: str = ""
    note: str = ""  # e.g. "runs not listed in results.csv"
    tune: bool = False  # a tune folder (nnlab tune): runs holds its best trial's run
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


def _refuse_absurd(run: RunFolder) -> None:
    """A RunError for a config.toml asking for tensors no machine holds (``config.limits``:
    no run can have trained it); its other keys are read as leniently as before."""
    from nnlab.config import load_config
    from nnlab.config.limits import LimitError
    from nnlab.errors import NnlabError

    path = run.path / "config.toml"
    try:
        load_config(str(path))
    except LimitError as exc:
        raise RunError(f"{path}: {exc}") from None
    except NnlabError:
        pass  # unknown or older keys: the report reads what it knows


def finished_run(run: RunFolder) -> RunFolder:
    """``run`` if it is a finished run folder; RunError (one line naming the file) if not."""
    _ = run.config  # a one-line RunError if config.toml is missing or not an nnlab config
    _refuse_absurd(run)
    if not run.finished:
        raise RunError(
            f"{run.path}: half-finished run (no summary.json yet); "
            f"finish it with 'nnlab resume {run.path}'"
        )
    _ = run.summary  # a one-line RunError if summary.json does not follow its schema
    if not (run.path / "metrics.csv").is_file():
        raise RunError(f"{run.path}: finished run without metrics.csv")
    _ = run.metrics  # a one-line RunError on a foreign header or a row that is not numbers
    return run


def skipped(exc: RunError) -> str:
    """The line that lists a run or sweep the report cannot read: ``skipped: PATH: why``."""
    return f"skipped: {exc}"


def _readable(run: RunFolder, notices: list[str]) -> RunFolder | None:
    """``finished_run(run)``, or None with a ``skipped:`` notice when it cannot be read."""
    try:
        return finished_run(run)
    except RunError as exc:
        notices.append(skipped(exc))
        return None


def unfinished(run: RunFolder) -> str:
    """The line that lists an unfinished run: ``unfinished: PATH (epoch k of N)``."""
    return f"unfinished: {run.path} ({run_progress(run)})"


def _point(run: RunFolder, keys: list[str]) -> dict:
    """A run's grid point read from its config.toml (as results.csv writes it: lists joined by commas)."""
    point = {}
    for key in keys:
        section, _, name = key.partition(".")
        value = run.config.get(section, {}).get(name, "")
        point[key] = ",".join(map(str, value)) if isinstance(value, list) else value
    return point


def read_sweep(path: Path, notices: list[str]) -> list[Experiment]:
    """A sweep (or ``--seeds N``) folder: its results.csv runs, and as a second experiment any
    finished run folder results.csv does not list; unfinished runs are listed in ``notices``."""
    sweep = SweepFolder(path)
    keys, listed, runs = sweep.keys, sweep.listed, []
    for run in listed:
        if run.finished:
            runs += [r for r in [_readable(run, notices)] if r is not None]
        else:
            notices.append(unfinished(run))
    names = {r.path.name for r in listed}
    extra = []
    for run in sweep.runs:
        if run.path.name in names:
            continue
        if run.finished:
            try:
                point = _point(run, keys)
            except RunError as exc:
                notices.append(skipped(exc))
                continue
            extra += [r for r in [_readable(RunFolder(run.path, point), notices)] if r is not None]
        else:
            notices.append(unfinished(run))
    out = [Experiment(path, keys, runs)] if runs else []
    if extra:
        out.append(Experiment(path, keys, extra, note="runs not listed in results.csv"))
    return out


def _is_experiment(folder: Path) -> bool:
    return (
        (folder / "results.csv").is_file()
        or (folder / "config.toml").is_file()
        or is_tune_folder(folder)
    )


def read_tune(path: Path, notices: list[str]) -> list[Experiment]:
    """A tune folder: its best trial's run as the experiment (the study itself is
    ``reporting/tune.py``'s blocks); none, with a notice, before a trial has completed."""
    folder = TuneFolder(path)
    best = folder.best_run()
    if best is None:
        notices.append(f"unfinished: {path} (a tune study without a completed trial yet)")
        return []
    run = _readable(best, notices)
    if run is None:
        return []
    note = f"the best of {len(folder.trials)} trials on {folder.settings['metric']}"
    return [Experiment(path, folder.keys, [run], note=note, tune=True)]


def find_folders(folder: Path) -> list[Path]:
    """Every run or sweep folder at or under ``folder``, at any depth, sorted; a run or sweep
    folder is not searched further (its run folders belong to it). Links are not followed."""
    if _is_experiment(folder):
        return [folder]
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
            found += find_folders(child)
    return found


def collect_folders(dirs: list[Path]) -> tuple[list[Experiment], list[str]]:
    """Every experiment under ``dirs`` (run folders, sweep folders, or folders holding them at any depth).

    Returns the experiments and notices (``unfinished: PATH (epoch k of N)``, ``skipped:
    PATH: why`` for what cannot be read). A folder that holds none of these, or nothing
    finished and readable at all, raises RunError.
    """
    experiments: list[Experiment] = []
    notices: list[str] = []
    seen: set[Path] = set()
    for d in map(Path, dirs):
        if not d.is_dir():
            raise RunError(f"{d}: no such folder (give run or sweep folders)")
        found = find_folders(d)
        if not found:
            raise RunError(
                f"{d}: not an nnlab run or sweep folder (no config.toml or results.csv, "
                "nor folders with them at any depth)"
            )
        for f in found:
            if f.resolve() in seen:  # given twice, or a folder and one inside it
                continue
            seen.add(f.resolve())
            try:
                if is_tune_folder(f):
                    experiments += read_tune(f, notices)
                elif (f / "results.csv").is_file():
                    experiments += read_sweep(f, notices)
                elif not (f / "summary.json").is_file():
                    notices.append(unfinished(RunFolder(f)))
                else:
                    experiments.append(Experiment(f, [], [finished_run(RunFolder(f))]))
            except RunError as exc:  # the whole folder cannot be read: list it, report the rest
                notices.append(skipped(exc))
    if not experiments and len(notices) == 1 and notices[0].startswith("skipped: "):
        raise RunError(notices[0].removeprefix("skipped: "))  # the one folder given: its error
    if not experiments:
        why = "; ".join(notices) or "no runs"
        raise RunError(
            f"{', '.join(map(str, dirs))}: nothing finished to report ({why}; no summary.json yet: "
            "'nnlab resume RUN' finishes a run)"
        )
    return experiments, notices


def collect(dirs: list[Path]) -> tuple[list[Experiment], list[str]]:
    """Every experiment under ``dirs`` (``collect_folders``), in the course report's order."""
    experiments, notices = collect_folders(dirs)
    experiments.sort(key=lambda e: (part_of(e.runs[0].config)[0], not e.preset.startswith("seed-")))
    return experiments, notices
