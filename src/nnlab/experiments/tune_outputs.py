"""The files of a tune folder (``nnlab.runs.tune_folder`` describes them), written from the study.

Several processes may share one study, so the shared files are always rewritten from
the storage, each atomically, under a short lock (``tune_study.study_lock``, waited for): the
last writer has seen every trial the earlier ones saw. ``refresh`` (after every trial)
writes ``tune.json`` and ``trials.csv``; ``finish`` (when a process's workers are done)
adds the importances, ``best.toml``, the best trial's test accuracy, and the figures.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.config import to_toml
from nnlab.config.values import toml_value
from nnlab.experiments.tune_study import SURPLUS, study_lock
from nnlab.runs import RunFolder, atomic_write_json, atomic_write_text
from nnlab.runs.tune_folder import TuneFolder, format_trials

if TYPE_CHECKING:
    from nnlab.experiments.tune_study import TuneJob


def shown_value(key: str, value: Any) -> str:
    """A tuned key's value as ``--set`` writes it: ``0.00316``, ``64,64``, ``relu``."""
    if isinstance(value, list):
        return ",".join(shown_value(key, v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return toml_value(value).strip('"') if isinstance(value, str) else toml_value(value)


def trial_values(job: TuneJob, trial) -> dict[str, Any]:
    """The config values a trial trained with (its stored draws, as the config reads them)."""
    return {
        key: spec.config_value(trial.params[key], job.base.get(key))
        for key, spec in job.settings.params.items()
        if key in trial.params
    }


def trial_row(job: TuneJob, trial) -> dict[str, Any]:
    """One line of trials.csv: no test accuracy, only what selection may look at."""
    state = trial.state.name
    value = trial.value if state == "COMPLETE" else None
    if state == "PRUNED" and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    attrs = trial.user_attrs
    note = attrs.get("failure") or attrs.get("note") or ""
    if state == "FAIL" and not note:
        note = "interrupted (not counted: a rerun makes it up)"
    ended = trial.datetime_complete
    seconds = (
        (ended - trial.datetime_start).total_seconds() if ended and trial.datetime_start else None
    )
    values = trial_values(job, trial)
    return {
        "number": trial.number,
        "state": state,
        "value": "" if value is None or math.isnan(value) else f"{value:.6g}",
        **{k: shown_value(k, v) for k, v in values.items()},
        "epochs": attrs.get("epochs", max(trial.intermediate_values, default="")),
        "duration_s": "" if seconds is None else f"{seconds:.2f}",
        "run": attrs.get("run", ""),
        "note": " ".join(str(note).split())[:300],
    }


def listed(trials) -> list:
    """The trials the files show: all but the surplus ones (never trained; ``tune_study.SURPLUS``)."""
    return [t for t in trials if not t.user_attrs.get(SURPLUS)]


def announce(job: TuneJob, trial) -> None:
    """One line on stderr as a trial ends (none for a surplus trial)."""
    if trial.user_attrs.get(SURPLUS):
        return
    row = trial_row(job, trial)
    params = "  ".join(f"{k.split('.')[-1]}={row[k]}" for k in job.settings.params if k in row)
    what = f"{job.settings.metric} {row['value']}" if row["value"] else ""
    what = "; ".join(w for w in (what, row["note"]) if w)
    print(
        f"[trial {trial.number}] {row['state'].lower()}: {what}  "
        f"{params}  ({row['duration_s'] or '?'} s)",
        file=sys.stderr,
        flush=True,
    )


def settings_json(job: TuneJob, best: dict[str, Any] | None = None) -> dict[str, Any]:
    from nnlab.experiments.tune_study import shown_storage

    s = job.settings
    info = {
        "preset": job.base.name,
        "study": job.study,
        "storage": shown_storage(job.storage),
        "metric": s.metric,
        "direction": s.direction,
        "pruner": s.pruner,
        "trials": s.trials,
        "val_fraction": job.base.data.val_fraction,
        "params": {k: p.text for k, p in s.params.items()},
    }
    if best is not None:
        info["best"] = best
    return info


def refresh(job: TuneJob, study) -> list[dict[str, Any]]:
    """tune.json (without a best: the search is not over) and trials.csv, from the storage."""
    out = Path(job.out)
    with study_lock(out):
        rows = [trial_row(job, t) for t in listed(study.get_trials(deepcopy=False))]
        atomic_write_json(out / "tune.json", settings_json(job))
        atomic_write_text(out / "trials.csv", format_trials(rows, list(job.settings.params)))
    return rows


def best_trial(job: TuneJob, trials) -> Any | None:
    """The completed trial with the best value (the earliest of equals), or None."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    if not done:
        return None
    sign = -1 if job.settings.direction == "maximize" else 1
    return min(done, key=lambda t: (sign * t.value, t.number))


def finish(job: TuneJob, study) -> dict[str, Any]:
    """Every file of the tune folder, from the study as it is now; returns what to print."""
    out = Path(job.out)
    with study_lock(out):
        trials = study.get_trials(deepcopy=False)
        rows = [trial_row(job, t) for t in listed(trials)]
        atomic_write_text(out / "trials.csv", format_trials(rows, list(job.settings.params)))
        note = write_importances(study, out, sum(r["state"] == "COMPLETE" for r in rows))
        best = best_trial(job, trials)
        best_info = None
        if best is not None:
            best_info = write_best(job, best)
        atomic_write_json(out / "tune.json", settings_json(job, best_info))
        figures = draw_figures(out)
    states = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    return {
        "folder": out,
        "study": job.study,
        "metric": job.settings.metric,
        "direction": job.settings.direction,
        "budget": job.settings.trials,
        "states": states,
        "best": best_info,
        "importance_note": note,
        "figures": figures,
    }


def write_best(job: TuneJob, best) -> dict[str, Any]:
    """best.toml (the best trial's own config, runnable, without [tune]) and, read once now
    that the search is over, the test accuracy of that trial's run."""
    from dataclasses import replace

    out = Path(job.out)
    run = RunFolder(out / best.user_attrs["run"])
    cfg = run.load_config()
    metric, vf, n = job.settings.metric, job.base.data.val_fraction, best.number
    cfg = replace(
        cfg,
        tune={},
        description=(
            f"nnlab tune, study '{job.study}': its best trial (number {n}), {metric} "
            f"{best.value:.4f} on data.val_fraction={vf} of the training set"
        ),
    )
    atomic_write_text(out / "best.toml", to_toml(cfg))
    summary = run.summary or {}
    return {
        "number": n,
        "value": best.value,
        "params": {k: shown_value(k, v) for k, v in trial_values(job, best).items()},
        "run": best.user_attrs["run"],
        "final_test_acc": summary.get("final_test_acc"),
        "config": "best.toml",
    }


def write_importances(study, out: Path, completed: int) -> str | None:
    """importances.csv from Optuna's fANOVA over the completed trials; or a note saying why not."""
    path = out / "importances.csv"
    path.unlink(missing_ok=True)
    if completed < 2:
        return "parameter importances need 2 or more completed trials"
    try:
        from optuna.importance import FanovaImportanceEvaluator, get_param_importances

        importances = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ImportError, ValueError, RuntimeError) as exc:
        return f"parameter importances not computed ({' '.join(str(exc).split())[:160]})"
    lines = ["param,importance"] + [f"{k},{v:.6g}" for k, v in importances.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return None


def draw_figures(out: Path) -> list[Path]:
    """history.png and importances.png, drawn from the folder's files (as ``nnlab report`` does)."""
    from nnlab.reporting.tune import plot_history, plot_importances

    folder = TuneFolder(out)
    drawn = [plot_history(folder, out / "history.png")]
    if folder.importances:
        drawn.append(plot_importances(folder, out / "importances.png"))
    else:
        (out / "importances.png").unlink(missing_ok=True)
    return [p for p in drawn if p is not None]
