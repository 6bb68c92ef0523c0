"""``TuneResult``: what ``nnlab.tune`` returns, and ``nnlab.open_run`` reads back from a tune folder.

Plain data about the search (counts by state, the best trial, where its config and run
are); building one needs no Optuna: ``from_finish`` takes what ``tune_outputs.finish``
wrote, ``from_folder`` reads ``tune.json`` and ``trials.csv`` (``runs/tune_folder.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.errors import RunError


@dataclass(frozen=True)
class TuneResult:
    """What ``nnlab.tune`` returns: the tune folder and its best trial.

    ``best_value`` is the trial's ``metric`` on the validation split (what chose it);
    ``best_test_acc`` the test accuracy of its run, read once, after the search.
    """

    path: Path
    metric: str
    direction: str
    budget: int
    states: dict[str, int]  # COMPLETE, PRUNED, FAIL: trials in the study
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, str] | None = None  # tuned key -> value, as --set writes it
    best_test_acc: float | None = None
    best_config: Path | None = None  # best.toml: nnlab train it
    best_run: Path | None = None  # the best trial's run folder
    importance_note: str | None = None  # why there are no parameter importances, if so

    @property
    def trials(self) -> list[dict[str, Any]]:
        """trials.csv, one dict per trial (number, state, value, the tuned keys, ...)."""
        from nnlab.runs.tune_folder import TuneFolder

        return TuneFolder(self.path).trials

    def format_summary(self) -> str:
        """What ``nnlab tune`` prints at the end."""
        s = self.states
        counts = f"{s['COMPLETE']} completed, {s['PRUNED']} pruned, {s['FAIL']} failed"
        if self.best_trial is None:
            return f"no completed trial yet ({counts}); tune folder: {self.path}"
        test = "not recorded" if self.best_test_acc is None else f"{self.best_test_acc:.4f}"
        params = "  ".join(f"{k}={v}" for k, v in (self.best_params or {}).items())
        lines = [
            f"best: trial {self.best_trial}, {self.metric} {self.best_value:.4f} on the "
            f"validation split (of {sum(s.values())} trials: {counts})",
            f"  {params}",
            f"test accuracy of that configuration (looked at once, now): {test}",
        ]
        if self.importance_note:
            lines.append(f"note: {self.importance_note}")
        lines.append(
            f"tune folder: {self.path} (trials.csv; nnlab train {self.best_config}; "
            f"nnlab report {self.path})"
        )
        return "\n".join(lines)

    @classmethod
    def from_folder(cls, path: str | Path) -> TuneResult:
        """The result of the search in a tune folder, read from its files (``nnlab.open_run``):
        no study is opened, optuna is not needed; a damaged file is a one-line RunError."""
        from nnlab.runs.tune_folder import TuneFolder

        folder = TuneFolder(path)
        info, rows = folder.settings, folder.trials
        best = folder.best
        if best is not None:
            if not (
                isinstance(best, dict)
                and isinstance(best.get("number"), int)
                and isinstance(best.get("value"), int | float)
                and isinstance(best.get("params", {}), dict)
                and isinstance(best.get("final_test_acc"), int | float | None)
            ):
                raise RunError(f"{folder.path / 'tune.json'}: 'best' is not an nnlab best trial")
            folder.best_run()  # best.run must name a folder inside it
        budget = info.get("trials")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise RunError(f"{folder.path / 'tune.json'}: 'trials' must be an integer")
        states = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
        return cls.from_finish(
            {
                "folder": folder.path,
                "metric": info["metric"],
                "direction": info["direction"],
                "budget": budget,
                "states": states,
                "best": best,
                "importance_note": None,
            }
        )

    @classmethod
    def from_finish(cls, done: dict[str, Any]) -> TuneResult:
        best, path = done["best"] or {}, Path(done["folder"])
        return cls(
            path=path,
            metric=done["metric"],
            direction=done["direction"],
            budget=done["budget"],
            states=done["states"],
            best_trial=best.get("number"),
            best_value=best.get("value"),
            best_params=best.get("params"),
            best_test_acc=best.get("final_test_acc"),
            best_config=path / "best.toml" if best else None,
            best_run=path / best["run"] if best else None,
            importance_note=done["importance_note"],
        )
