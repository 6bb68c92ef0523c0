"""The study of ``nnlab tune`` in its storage: opening it (sampler, pruner, RDB storage),
checking that a rerun asks for the same search, and counting trials against the budget.

``TuneJob`` is everything a worker needs to run trials, picklable for spawned processes
(and Ray tasks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.config import Config, identity
from nnlab.config.tune import TuneSettings
from nnlab.errors import ConfigError, RunError

LOCK_NAME = ".tune.lock"


@dataclass(frozen=True)
class TuneJob:
    """Everything a worker needs, picklable: it goes to spawned processes (and Ray tasks)."""

    base: Config  # the config every trial starts from (val_fraction set, no [tune] table)
    settings: TuneSettings
    out: str
    storage: str  # an Optuna RDB URL
    study: str
    timeout: float | None = None  # seconds after which a worker starts no new trial

    @property
    def trials_dir(self) -> Path:
        return Path(self.out) / "trials"


def import_optuna():
    """optuna, quiet (nnlab prints a line per trial); a one-line error when it is missing."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "nnlab tune needs Optuna, an optional extra: pip install 'nnlab[tune]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # the heartbeat of a server storage is "experimental" in Optuna 4-5: no warning per process
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_storage(out: Path) -> str:
    """The embedded default: an SQLite file in the tune folder."""
    return f"sqlite:///{(Path(out) / 'study.db').resolve()}"


def shown_storage(url: str) -> str:
    """``url`` without a password (it goes to the terminal and to tune.json)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/")[0]:
        user, _, host = rest.partition("@")
        rest = f"{user.split(':')[0]}:***@{host}" if ":" in user else rest
    return f"{scheme}{sep}{rest}"


# --------------------------------------------------------------------------- the study


def open_study(job: TuneJob, seed: int = 0):
    """The study in ``job.storage`` (created if new) with a seeded TPE sampler and the pruner."""
    optuna = import_optuna()
    s, t = job.settings, job.base.train
    if s.pruner == "median":
        # a trial is compared with the median of earlier ones at the same epoch, from a fifth
        # of the epochs on, once 5 trials have finished (fewer with a small budget)
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=min(5, max(2, s.trials // 8)), n_warmup_steps=t.epochs // 5
        )
    elif s.pruner == "halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner()
    else:
        pruner = optuna.pruners.NopPruner()
    import sqlalchemy.exc

    for attempt in range(3):
        try:
            # one process at a time: two making a new SQLite file's tables at once collide
            with study_lock(job.out):
                return optuna.create_study(
                    storage=_storage(optuna, job.storage),
                    study_name=job.study,
                    direction=s.direction,
                    sampler=_sampler(optuna, s, seed),
                    pruner=pruner,
                    load_if_exists=True,
                )
        except sqlalchemy.exc.OperationalError as exc:  # another machine's, on a shared RDB
            if attempt == 2:
                raise RunError(f"--storage {shown_storage(job.storage)}: {_first(exc)}") from None
            time.sleep(1 + attempt)
        except (
            ValueError,
            ImportError,
            optuna.exceptions.StorageInternalError,
            sqlalchemy.exc.SQLAlchemyError,
        ) as exc:
            raise RunError(
                f"--storage {shown_storage(job.storage)}: cannot open it ({_first(exc)})"
            ) from None
    raise AssertionError("unreachable")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@contextmanager
def study_lock(out: str | Path) -> Iterator[None]:
    """Hold ``OUT/.tune.lock``, waiting for another process's turn, while the block runs:
    opening the study, and rewriting the tune folder's shared files (``tune_outputs``)."""
    try:
        fd = os.open(Path(out) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise RunError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        # on a file system without locks, go on: atomic writes still leave whole files
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sampler(optuna, settings: TuneSettings, seed: int):
    """TPE whose draws for trial k are seeded by (seed, k): a study run again draws the same,
    a continued one draws anew, and processes that start together never draw alike (one
    seed per process would give their first, random, trials the same values). TPE keeps
    no state between trials but its random generator, so a fresh one per trial is TPE.
    Its first draws are random: a quarter of the budget, 2 to 10 of them."""
    startup = min(10, max(2, settings.trials // 4))

    class TrialSeededTPE(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.each: dict[int, Any] = {}

        def _tpe(self, trial):
            if trial.number not in self.each:
                trial_seed = (seed * 1_000_003 + trial.number) % 2**32
                self.each[trial.number] = optuna.samplers.TPESampler(
                    seed=trial_seed, n_startup_trials=startup
                )
            return self.each[trial.number]

        def infer_relative_search_space(self, study, trial):
            return self._tpe(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._tpe(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial) -> None:
            self._tpe(trial).before_trial(study, trial)

        def after_trial(self, study, trial, state, values) -> None:
            self._tpe(trial).after_trial(study, trial, state, values)
            self.each.pop(trial.number)

    return TrialSeededTPE()


def _storage(optuna, url: str):
    """An RDB storage; SQLite waits for the other processes' writes, others beat a heartbeat
    (a trial of a machine that died is failed after the grace period)."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=300)


def check_same_study(study, job: TuneJob) -> None:
    """Record what the study searches the first time; later, refuse another search in it."""
    tuned = set(job.settings.params)
    want = {
        "config": {k: v for k, v in identity(job.base).items() if k not in tuned},
        "params": {k: p.text for k, p in job.settings.params.items()},
        "metric": job.settings.metric,
        "direction": job.settings.direction,
    }
    saved = study.user_attrs.get("nnlab")
    if saved is None:
        study.set_user_attr("nnlab", want)
        return
    for part in ("metric", "direction", "params"):
        if saved.get(part) != want[part]:
            raise RunError(
                f"study '{job.study}' in {shown_storage(job.storage)} was made with {part} "
                f"{saved.get(part)}, this command asks {want[part]}; use a new --out or --study"
            )
    # keys the saved study does not know are new in this nnlab: their defaults apply
    old = saved.get("config", {})
    diff = [k for k in want["config"] if k in old and old[k] != want["config"][k]]
    if diff:
        k = diff[0]
        raise RunError(
            f"study '{job.study}' in {shown_storage(job.storage)} was made with "
            f"{k}={old[k]}, this command asks {want['config'][k]}; "
            "use a new --out or --study"
        )


def counted(trials, optuna) -> int:
    """Trials that count against the budget: all but those cut short by an interruption
    and those queued (``study.enqueue_trial``) but not started: the budget runs them."""
    state = optuna.trial.TrialState
    return sum(
        1
        for t in trials
        if t.state not in (state.FAIL, state.WAITING) or t.user_attrs.get("failure")
    )


# user attribute of a trial asked after other workers had filled the budget (between this
# worker's check and its next trial): failed before training, uncounted, in no file
SURPLUS = "surplus"


def past_budget(trial, budget: int, optuna) -> bool:
    """Whether the trials created before ``trial`` already fill ``budget``: then it is one
    too many (several workers each check the budget after their own trial)."""
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    return counted(earlier, optuna) >= budget


def fail_dead_trials(study, optuna) -> None:
    """Trials left RUNNING by a process of this machine that is gone (kill -9, a worker
    stopped by Ctrl-C) become FAIL, uncounted, so the budget makes them up."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and not _alive(t.user_attrs.get("pid")):
            # optuna's own way for stale trials (fail_stale_trials) needs a heartbeat; tell by
            # number is public, and skip_if_finished covers a trial finished meanwhile
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
