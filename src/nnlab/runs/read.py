"""Reading run folders: ``RunFolder`` and ``SweepFolder``, the one reader for the API,
the report and the plots."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from nnlab.config.files import read_config_file
from nnlab.errors import ConfigError, RunError
from nnlab.runs.files import MAX_CSV_BYTES, check_size, load_arrays, read_json
from nnlab.runs.write import metric_columns, read_metrics

# --------------------------------------------------------------------------- reading: RunFolder, SweepFolder
#
# The one reader of run and sweep folders, for the API, the report and the plots.
# Nothing is read until an attribute is used; a bad file is a one-line RunError naming it.

# The contract's results.csv columns (the swept keys come between run and seed).
RESULT_COLUMNS = ("run", "seed", "final_test_acc", "best_test_acc", "train_seconds")
# RUN/boundary.npz, written by the engine at the end of a run on 2-D inputs: grid ``xx``, ``yy``
# (R, R), the reported model's ``pred`` class and ``prob`` (its probability) there, and the data.
BOUNDARY_ARRAYS = ("xx", "yy", "prob", "pred", "x_train", "y_train", "x_test", "y_test")

# summary.json, as the report and the API read it: key -> (required, allowed types); None in
# the types: the value may be null. Other keys (plan, versions, ...) are informational.
_NUM = (int, float)
SUMMARY_SCHEMA: dict[str, tuple[bool, tuple]] = {
    "final_test_acc": (True, (*_NUM, None)),
    "best_test_acc": (True, (*_NUM, None)),
    "train_seconds": (True, _NUM),
    "status": (False, (str,)),
    "seed": (False, (int,)),
    "preset": (False, (str, None)),
    "final_test_loss": (False, (*_NUM, None)),
    "best_epoch": (False, (int, None)),
    "epochs": (False, (int,)),
    "steps": (False, (int,)),
    "stop_reason": (False, (str, None)),
    "final_model": (False, (str, None)),
    "started": (False, (str,)),
    "device": (False, (str,)),
    "eval_seconds": (False, (*_NUM, None)),
    "error": (False, (str, None)),
}
SUMMARY_STATUSES = ("completed", "diverged")


def check_summary(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    """``summary`` (read_json's dict) if it follows ``SUMMARY_SCHEMA``, else a one-line RunError
    naming ``path`` and the key."""
    for key, (required, kinds) in SUMMARY_SCHEMA.items():
        if key not in summary:
            if required:
                raise RunError(f"{path}: missing key {key!r} (not an nnlab summary)")
            continue
        value = summary[key]
        ok = (value is None and None in kinds) or (
            not isinstance(value, bool) and isinstance(value, tuple(k for k in kinds if k))
        )
        if not ok:
            want = " or ".join("null" if k is None else _JSON_NAMES[k] for k in kinds)
            got = "null" if value is None else _JSON_NAMES.get(type(value), type(value).__name__)
            raise RunError(f"{path}: {key} must be {want}, got {got}")
    status = summary.get("status", "completed")
    if status not in SUMMARY_STATUSES:
        raise RunError(
            f"{path}: status must be one of {', '.join(SUMMARY_STATUSES)}, got {str(status)[:40]!r}"
        )
    return summary


_JSON_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
_JSON_NAMES |= {list: "a list", dict: "an object"}


class RunFolder:
    """One run folder. ``point``: its swept key -> value in a sweep's results.csv ({} alone).

    ``config`` is read once; ``summary`` once it exists (it is written once, last);
    ``metrics`` every time, so a run still training shows its latest rows.
    """

    def __init__(self, path: str | Path, point: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.point = dict(point or {})
        self._config: dict[str, Any] | None = None
        self._summary: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RunFolder('{self.path}', {self.status})"

    @property
    def config(self) -> dict[str, Any]:
        """``config.toml`` as a dict of sections (tomllib), top-level keys included."""
        if self._config is None:
            import tomllib

            path = self.path / "config.toml"
            if not path.is_file():
                raise RunError(f"{self.path}: not an nnlab run folder (no config.toml)")
            try:  # a regular file of at most 1 MiB (config.files), like any config
                cfg = tomllib.loads(read_config_file(str(path)))
            except (ConfigError, tomllib.TOMLDecodeError) as exc:
                raise RunError(f"{path}: not a readable config ({exc})") from None
            if not all(isinstance(cfg.get(s), dict) for s in ("data", "model", "optim", "train")):
                raise RunError(
                    f"{path}: not an nnlab config (needs [data], [model], [optim], [train])"
                )
            self._config = cfg
        return self._config

    def load_config(self) -> Any:
        """The run's ``nnlab.config.Config``, validated, named after its preset."""
        from nnlab.config import load_config
        from nnlab.errors import ConfigError

        path = self.path / "config.toml"
        if not path.is_file():
            raise RunError(f"{self.path}: not an nnlab run folder (no config.toml)")
        try:
            cfg = load_config(str(path))
        except ConfigError as exc:
            raise RunError(str(exc)) from None
        cfg.name = self.preset or cfg.name
        return cfg

    @property
    def summary(self) -> dict[str, Any] | None:
        """``summary.json``, or None while the run is unfinished."""
        if self._summary is None and self.finished:
            path = self.path / "summary.json"
            self._summary = check_summary(read_json(path), path)
        return self._summary

    @property
    def finished(self) -> bool:
        return (self.path / "summary.json").is_file()

    @property
    def status(self) -> str:
        """``completed``, ``diverged`` (summary.json's status), or ``unfinished``."""
        summary = self.summary
        return "unfinished" if summary is None else str(summary.get("status", "completed"))

    @property
    def metrics(self) -> list[dict[str, float]]:
        """``metrics.csv``: one dict per evaluation (epoch, step, train_loss, ...); a file
        whose header is not ``metric_columns`` is a one-line RunError naming the header."""
        path = self.path / "metrics.csv"
        check_metrics_header(path)
        return read_metrics(path)

    @property
    def preset(self) -> str | None:
        """The preset the run was resolved from: config.toml's ``preset``, else summary.json's."""
        name = self.config.get("preset")
        if not isinstance(name, str) or not name:
            name = (self.summary or {}).get("preset")
        return str(name) if name else None

    @property
    def reported(self) -> str:
        """``best`` if the run ended on its restored best checkpoint, else ``last``: the model
        ``final_test_acc`` measured."""
        s = self.summary or {}
        best = s.get("final_model") == "best" or "restored the best" in str(s.get("stop_reason"))
        return "best" if best else "last"

    def checkpoint_path(self, which: str = "reported") -> Path:
        """``checkpoints/{best,last}.pt`` (``.npz`` for the NumPy backend); ``reported``: see ``reported``."""
        if which not in ("reported", "best", "last"):
            raise ValueError(f"which: must be one of reported, best, last, got {which!r}")
        name = self.reported if which == "reported" else which
        ext = ".npz" if self.config["model"].get("backend") == "numpy" else ".pt"
        path = self.path / "checkpoints" / f"{name}{ext}"
        if not path.is_file():
            raise RunError(f"{path}: checkpoint not found")
        return path

    def boundary(self) -> dict[str, Any] | None:
        """The arrays of ``boundary.npz`` (``BOUNDARY_ARRAYS``), or None if the run has none."""
        path = self.path / "boundary.npz"
        if not path.is_file():
            return None
        arrays = load_arrays(path)
        missing = [k for k in BOUNDARY_ARRAYS if k not in arrays]
        if missing:
            raise RunError(f"{path}: missing array(s) {', '.join(missing)}")
        return arrays


class SweepFolder:
    """A sweep (or ``--seeds N``) folder: one run folder per (grid point, seed) and results.csv."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SweepFolder('{self.path}')"

    def _read(self) -> tuple[list[str], list[dict[str, Any]]]:
        """(columns, rows) of results.csv, cells as numbers where they are numbers."""
        path = self.path / "results.csv"
        if not path.is_file():
            raise RunError(f"{self.path}: not an nnlab sweep folder (no results.csv)")
        check_size(path, MAX_CSV_BYTES)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns, rows = list(reader.fieldnames or []), list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise RunError(f"{path}: cannot read results ({exc})") from None
        missing = [c for c in RESULT_COLUMNS if c not in columns]
        if missing:
            raise RunError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"results.csv needs {', '.join(RESULT_COLUMNS)}"
            )
        return columns, [{k: v if k == "run" else _number(v) for k, v in r.items()} for r in rows]

    @property
    def results(self) -> list[dict[str, Any]]:
        """results.csv: one dict per finished run (run, swept keys, seed, final_test_acc, ...)."""
        return self._read()[1]

    @property
    def keys(self) -> list[str]:
        """The swept keys: the results.csv columns between ``run`` and ``seed``."""
        columns = self._read()[0]
        return columns[columns.index("run") + 1 : columns.index("seed")]

    @property
    def listed(self) -> list[RunFolder]:
        """The runs results.csv lists (the finished ones), in its order, with their grid points."""
        columns, rows = self._read()
        keys = columns[columns.index("run") + 1 : columns.index("seed")]
        return [RunFolder(self.path / r["run"], {k: r[k] for k in keys}) for r in rows]

    @property
    def runs(self) -> list[RunFolder]:
        """Every run subfolder (one holding config.toml), finished or not, sorted by name."""
        listed = (
            {r.path.name: r for r in self.listed} if (self.path / "results.csv").is_file() else {}
        )
        return [
            listed.get(p.name) or RunFolder(p)
            for p in sorted(self.path.iterdir())
            if (p / "config.toml").is_file()
        ]


def check_metrics_header(path: Path) -> None:
    """A one-line RunError unless ``path``'s first line is an nnlab metrics header."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline(4096).rstrip("\r\n")
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(
            f"{path}: cannot read metrics ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    if header not in {",".join(metric_columns(v)) for v in (False, True)}:
        raise RunError(
            f"{path}: not an nnlab metrics file (header should be {','.join(metric_columns(False))}"
            f", with {','.join(metric_columns(True)[len(metric_columns(False)) :])} "
            "after a validation split)"
        )


def _number(text: str | None) -> Any:
    """A results.csv cell as int, float or None (empty: a diverged run), else the string."""
    if text in (None, ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run_progress(run: RunFolder) -> str:
    """How far a run got, for a listing of unfinished runs: ``epoch k of N`` (k: the last epoch
    in metrics.csv, 0 if none; N: config.toml's train.epochs). Never raises: an unreadable
    file says so instead."""
    try:
        total = run.config["train"].get("epochs", "?")
    except RunError:
        return "no readable config.toml"
    path = run.path / "metrics.csv"
    try:
        rows = read_metrics(path) if path.is_file() else []
    except RunError:
        return f"unreadable metrics.csv, of {total} epochs"
    import math

    epochs = [r.get("epoch", math.nan) for r in rows]
    done = max((int(e) for e in epochs if not math.isnan(e)), default=0)
    return f"epoch {done} of {total}"
