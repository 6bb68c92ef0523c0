"""The tune folder (``nnlab tune --out OUT``): its files, written by ``experiments/tune*.py``
and read here, for the API and the report (which never needs optuna)::

    OUT/study.db          the Optuna study (SQLite), unless --storage names another database
    OUT/tune.json         what the study searches (preset, metric, direction, space, budget,
                          storage, study name) and, once a trial completed, the best one
    OUT/trials.csv        one row per trial: number, state, value, the tuned keys, epochs,
                          duration_s, run, note (no test accuracy: trials are chosen on value)
    OUT/importances.csv   param, importance (Optuna's fANOVA over completed trials), when computable
    OUT/best.toml         the best trial's complete config: ``nnlab train OUT/best.toml``
    OUT/trials/trial-NNNN/  one run folder per trial (``nnlab report`` reads them)
    OUT/history.png, OUT/importances.png

``value`` is the trial's ``metric`` on the validation split (for a pruned trial, its last
reported value, where it was stopped). The test accuracy of the best trial is in
``tune.json`` under ``best``, read from its run folder once the search has ended.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from nnlab.errors import RunError
from nnlab.runs.files import MAX_CSV_BYTES, check_size, read_json
from nnlab.runs.read import RunFolder

TRIAL_COLUMNS = ("number", "state", "value")  # then the tuned keys, then TRIAL_TAIL
TRIAL_TAIL = ("epochs", "duration_s", "run", "note")
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def is_tune_folder(path: Path) -> bool:
    return (Path(path) / "tune.json").is_file() and (Path(path) / "trials.csv").is_file()


def format_trials(rows: list[dict[str, Any]], keys: list[str]) -> str:
    """trials.csv's text: the header, then one line per trial in ``rows``."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=[*TRIAL_COLUMNS, *keys, *TRIAL_TAIL], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class TuneFolder:
    """A tune folder, read lazily; a bad file is a one-line RunError naming it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TuneFolder('{self.path}')"

    @property
    def settings(self) -> dict[str, Any]:
        """tune.json: preset, metric, direction, params (key -> spec), trials, study, storage, best."""
        path = self.path / "tune.json"
        if not path.is_file():
            raise RunError(f"{self.path}: not an nnlab tune folder (no tune.json)")
        info = read_json(path)
        for key in ("metric", "direction", "params"):
            if key not in info:
                raise RunError(f"{path}: missing key {key!r} (not an nnlab tune.json)")
        return info

    @property
    def keys(self) -> list[str]:
        """The tuned keys: trials.csv's columns between ``value`` and ``epochs``."""
        columns = self._read()[0]
        return columns[len(TRIAL_COLUMNS) : columns.index(TRIAL_TAIL[0])]

    @property
    def trials(self) -> list[dict[str, Any]]:
        """trials.csv: one dict per trial; ``number``, ``value``, ``epochs``, ``duration_s`` as
        numbers (None where empty), the tuned keys as written."""
        return self._read()[1]

    def _read(self) -> tuple[list[str], list[dict[str, Any]]]:
        path = self.path / "trials.csv"
        check_size(path, MAX_CSV_BYTES)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns, rows = list(reader.fieldnames or []), list(reader)
        except FileNotFoundError:
            raise RunError(f"{self.path}: not an nnlab tune folder (no trials.csv)") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise RunError(f"{path}: cannot read trials ({exc})") from None
        if columns[: len(TRIAL_COLUMNS)] != list(TRIAL_COLUMNS) or any(
            c not in columns for c in TRIAL_TAIL
        ):
            raise RunError(
                f"{path}: not an nnlab trials file (columns should be "
                f"{','.join(TRIAL_COLUMNS)},<keys>,{','.join(TRIAL_TAIL)})"
            )
        out = []
        for i, row in enumerate(rows, start=2):
            try:
                for key in ("number", "value", "epochs", "duration_s"):
                    row[key] = _number(row.get(key))
            except ValueError:
                raise RunError(f"{path}: line {i}: {key} is not a number") from None
            if row["state"] not in STATES:
                raise RunError(f"{path}: line {i}: unknown state {row['state']!r}")
            out.append(row)
        return columns, out

    @property
    def importances(self) -> dict[str, float] | None:
        """importances.csv as param -> importance, largest first; None when there is none."""
        path = self.path / "importances.csv"
        if not path.is_file():
            return None
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return {r["param"]: float(r["importance"]) for r in csv.DictReader(f)}
        except (OSError, KeyError, ValueError, csv.Error) as exc:
            raise RunError(f"{path}: not an nnlab importances file ({exc})") from None

    @property
    def best(self) -> dict[str, Any] | None:
        """tune.json's ``best``: trial number, value, params, run, final_test_acc; None before any."""
        return self.settings.get("best")

    def best_run(self) -> RunFolder | None:
        """The best trial's run folder (its point: the tuned keys' values), or None."""
        best = self.best
        if not best:
            return None
        run = str(best.get("run", ""))
        if not run or Path(run).is_absolute() or ".." in Path(run).parts:
            raise RunError(f"{self.path / 'tune.json'}: best.run must be a folder inside it")
        return RunFolder(self.path / run, {k: v for k, v in best.get("params", {}).items()})


def _number(text: str | None) -> float | int | None:
    if text in (None, ""):
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def sorted_by_value(rows: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """The completed trials, best first."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    done = [r for r in done if not math.isnan(r["value"])]
    return sorted(done, key=lambda r: r["value"], reverse=direction == "maximize")
