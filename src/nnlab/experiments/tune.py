"""``nnlab tune``: hyperparameter search with Optuna, every trial scored on a validation split.

- The base config (preset or TOML file, plus ``--set``) keeps its ``data.val_fraction`` or
  gets ``DEFAULT_VAL_FRACTION``; a trial is that config with the tuned keys drawn by Optuna's
  TPE sampler, trained in this process (no start-up per trial) into
  ``OUT/trials/trial-NNNN/``, a normal run folder. Its value is the validation metric of
  the model its run ends with; nothing looks at the test set until the search has ended.
- Every evaluation reports the metric to the pruner (median or successive halving); a
  trial it prunes stops there like an early stop (the run folder is finished, its
  ``stop_reason`` says so) and is recorded as PRUNED.
- The study lives in a storage (``OUT/study.db``, or ``--storage URL``: PostgreSQL on a
  cluster). A rerun of the command continues it up to ``--trials`` trials in all. A
  *worker* (``run_worker``) runs trials until the study holds its budget; the local
  backend runs one in this process or ``--jobs J`` in spawned processes, and several
  ``nnlab tune`` processes (or machines) on one storage share the study the same way. A
  backend is any ``(job, jobs) -> None`` that runs ``run_worker(job, i, threads)``
  where the storage and OUT are reachable (``--backend ray`` plugs in there).
- The budget counts completed, pruned and running trials and those that failed by their
  own result (diverged, or a drawn combination the config rejects). A trial cut short
  by Ctrl-C or a killed process is recorded as FAIL but not counted: a rerun makes it up.
  Each worker checks the budget after its own trial, so two can both ask for the last one:
  a trial whose predecessors already fill the budget stops before training (``SURPLUS``).
- OUT is not locked for the whole study (processes share it through the storage): each
  trial's run folder is locked by the engine, and the shared files are rewritten from the
  storage under a short lock (``tune_outputs.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nnlab.config import Config
from nnlab.config.tune import TuneSettings
from nnlab.errors import ConfigError, NnlabError, RunError
from nnlab.experiments.tune_result import TuneResult
from nnlab.experiments.tune_study import (
    SURPLUS,
    TuneJob,
    check_same_study,
    counted,
    default_storage,
    fail_dead_trials,
    import_optuna,
    open_study,
    past_budget,
    shown_storage,
)
from nnlab.runs.tune_folder import is_tune_folder

DEFAULT_VAL_FRACTION = 0.2
# What a tune folder may hold besides dotfiles; anything else means it is not one.
TUNE_FILES = {"study.db", "study.db-journal", "study.db-wal", "study.db-shm", "tune.json"}
TUNE_FILES |= {"trials.csv", "importances.csv", "best.toml", "history.png", "importances.png"}
TUNE_FILES |= {"trials"}


class TrialFailed(NnlabError):
    """A trial that failed by its own result: recorded as FAIL, counted, the study goes on."""


# --------------------------------------------------------------------------- the whole search


def tuning_base(cfg: Config, settings: TuneSettings, val_fraction_given: bool = False) -> Config:
    """The config every trial starts from: a validation split, no [tune] table; each tuned
    key's extreme values checked against the config (one line naming the key)."""
    if not cfg.data.val_fraction:
        if val_fraction_given:
            raise ConfigError(
                "data.val_fraction=0: nnlab tune scores trials on a validation split held out "
                f"of the training set, never on the test set; give a share > 0 (default {DEFAULT_VAL_FRACTION})"
            )
        cfg = cfg.replace({"data.val_fraction": DEFAULT_VAL_FRACTION})
    base = replace(cfg, tune={})
    for key, spec in settings.params.items():
        extremes = spec.choices if spec.kind == "choice" else (spec.low, spec.high)
        for raw in extremes:
            try:
                base.replace({key: spec.config_value(raw, base.get(key))})
            except ConfigError as exc:
                raise ConfigError(f"--param {key}={spec.text}: {exc}") from None
    return base


def search_settings(
    cfg: Config,
    params: Mapping[str, Any] | Sequence[str] | None = None,
    **flags: Any,
) -> TuneSettings:
    """What to search: ``cfg``'s ``[tune]`` table, extended by ``params`` (key -> spec, or
    ``"KEY=SPEC"`` strings as ``--param`` gives them), then ``flags`` (trials, metric,
    direction, pruner; None keeps the table's)."""
    from nnlab.config.tune import parse_param_args, parse_spec, tune_settings

    if isinstance(params, Mapping):
        space = {k: parse_spec(k, v, "params:") for k, v in params.items()}
    else:
        space = parse_param_args(list(params or []))
    return tune_settings(cfg.tune, space, **flags)


def run_tune(
    cfg: Config,
    settings: TuneSettings,
    out: Path,
    *,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    timeout: float | None = None,
    val_fraction_given: bool = False,
    backend: Callable[[TuneJob, int], None] | None = None,
) -> TuneResult:
    """Run (or continue) the study in ``out`` to ``settings.trials`` trials; write its files.

    Returns the best trial (params, value, run folder and, read once now that the search
    is over, its test accuracy) and the count of trials per state.
    """
    from nnlab.experiments import tune_outputs

    out = Path(out)
    base = tuning_base(cfg, settings, val_fraction_given)
    job = TuneJob(
        base, settings, str(out), storage or default_storage(out), study or cfg.name, timeout
    )
    optuna = import_optuna()
    created = not out.exists()
    prepare_tune_dir(out)
    try:
        handle = open_study(job)
        check_same_study(handle, job)
        if not handle.trials and any(job.trials_dir.iterdir()):
            raise RunError(
                f"--out {out}: trials/ holds trial folders of another study than "
                f"'{job.study}' in {shown_storage(job.storage)}; use a new --out"
            )
    except NnlabError:
        if created:  # refused before any trial: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    fail_dead_trials(handle, optuna)
    done = counted(handle.trials, optuna)
    print(
        f"study '{job.study}' in {shown_storage(job.storage)}: {done} of {settings.trials} "
        f"trials there; tuning {', '.join(settings.params)} on {settings.metric} "
        f"(data.val_fraction={base.data.val_fraction}); trial folders in {job.trials_dir}",
        file=sys.stderr,
    )
    try:
        (backend or run_local_workers)(job, jobs)
    except KeyboardInterrupt:  # list the interrupted trials too; a rerun makes them up
        handle = open_study(job)
        fail_dead_trials(handle, optuna)  # those of stopped worker processes
        tune_outputs.refresh(job, handle)
        raise
    return TuneResult.from_finish(tune_outputs.finish(job, open_study(job)))


def prepare_tune_dir(out: Path) -> None:
    """``out`` is new, empty, or a tune folder; else a one-line RunError (nothing written)."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        foreign = [n for n in foreign if n not in TUNE_FILES]
        if foreign and not is_tune_folder(out):
            raise RunError(
                f"--out {out}: folder is not empty and is not an nnlab tune folder ({foreign[0]})"
            )
    try:
        (out / "trials").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--out {out}: cannot create it ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- workers


def run_worker(job: TuneJob, worker: int = 0, threads: int = 0) -> int:
    """Run trials of ``job``'s study until it holds its budget (or ``job.timeout`` passes);
    returns how many this worker ran. Any number of workers may run at once, anywhere the
    storage and ``job.out`` are reachable; ``worker`` is this one's index among them,
    ``threads`` its share of the CPU threads (0: as the engine picks)."""
    from nnlab.experiments import tune_outputs

    optuna = import_optuna()
    if threads:
        from nnlab.engine.setup import limit_cpu_threads

        limit_cpu_threads(threads)
    study = open_study(job, seed=job.base.train.seed)
    fail_dead_trials(study, optuna)
    budget = job.settings.trials
    if counted(study.trials, optuna) >= budget:
        return 0
    ran = 0

    def after_trial(study, trial) -> None:
        nonlocal ran
        ran += not trial.user_attrs.get(SURPLUS)
        tune_outputs.announce(job, trial)
        tune_outputs.refresh(job, study)
        if counted(study.get_trials(deepcopy=False), optuna) >= budget:
            study.stop()

    study.optimize(
        TrialRunner(job),
        timeout=job.timeout,
        catch=(TrialFailed,),
        callbacks=[after_trial],
        gc_after_trial=False,
    )
    return ran


class TrialRunner:
    """The objective: one trial trained in this process into its own run folder."""

    def __init__(self, job: TuneJob) -> None:
        self.job = job

    def __call__(self, trial) -> float:
        import optuna

        from nnlab.engine.run import run_training
        from nnlab.errors import TrainingDiverged

        job, metric = self.job, self.job.settings.metric
        if past_budget(trial, job.settings.trials, optuna):  # another worker took the last one
            trial.set_user_attr(SURPLUS, True)  # after_trial then stops this worker
            raise TrialFailed(f"trial {trial.number}: the budget was filled meanwhile")
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        folder = job.trials_dir / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", folder.relative_to(job.out).as_posix())
        overrides = {
            key: spec.config_value(spec.suggest(trial), job.base.get(key))
            for key, spec in job.settings.params.items()
        }
        try:
            cfg = job.base.replace(overrides)
        except ConfigError as exc:  # a combination the config rejects: a result, not a crash
            trial.set_user_attr("failure", str(exc))
            raise TrialFailed(str(exc)) from None
        pruned: list[str] = []

        def on_eval(epoch: int, row: dict[str, float]) -> str | None:
            value = row[metric]
            trial.report(value, epoch)
            if not trial.should_prune():
                return None
            pruned.append(f"pruned at epoch {epoch}")
            return f"pruned by nnlab tune (trial {trial.number}) at epoch {epoch}: {metric} {value:.4g}"

        try:
            summary = run_training(cfg, folder, progress="off", on_eval=on_eval)
        except TrainingDiverged as exc:  # recorded in the run folder and in the study
            trial.set_user_attr("failure", f"diverged: {exc}")
            raise TrialFailed(str(exc)) from None
        except ConfigError as exc:  # the engine cannot train this combination (no folder made)
            trial.set_user_attr("failure", str(exc))
            raise TrialFailed(str(exc)) from None
        trial.set_user_attr("epochs", summary.get("epochs"))
        if pruned:
            trial.set_user_attr("note", pruned[0])
            raise optuna.TrialPruned(pruned[0])
        value = summary.get(f"final_{metric}")
        if value is None:  # e.g. a backend that keeps no validation split
            trial.set_user_attr("failure", f"the run recorded no final {metric}")
            raise TrialFailed(f"trial {trial.number}: no {metric}")
        return float(value)


def run_local_workers(job: TuneJob, jobs: int) -> None:
    """The local backend: one worker in this process, or ``jobs`` spawned worker processes
    splitting the cores. Ctrl-C (or a failed worker) stops them all at once; their
    unfinished trials are failed, uncounted, by the next run (``fail_dead_trials``)."""
    if jobs <= 1:
        run_worker(job)
        return
    from nnlab.experiments.backends import run_in_workers

    threads = max(1, (os.cpu_count() or 1) // jobs)
    run_in_workers(
        [(run_worker, (job, w, threads)) for w in range(jobs)],
        jobs,
        threads,
        on_result=lambda _: None,
        stopped=f"the tune workers were stopped; rerun the same command to continue {job.out}",
    )
