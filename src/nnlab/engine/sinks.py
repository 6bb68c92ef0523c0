"""Where a run's results go: the one writer of run folders, for every backend.

- ``RunSink``: one lone torch run; at each evaluation a metrics row, then
  ``last.pt`` (and ``best.pt`` when it improved), so a crash loses at most one
  evaluation interval.
- ``StackSink``: S seeds trained as one stack; each member's folder gets the
  same files with the same checkpoint schema, written once at the end (ten
  seeds' fsyncs at every evaluation would cost more than training them).
- ``finish_run``: curves.png, boundary.npz (2-D inputs), then summary.json,
  last: a run is finished iff summary.json exists. The NumPy backend's runs go
  through it too.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.config import Config, to_toml
from nnlab.config.user_code import user_code_record
from nnlab.runs import (
    RunDir,
    command_line,
    completed_summary,
    git_commit,
    load_checkpoint,
    save_arrays,
    save_checkpoint,
    versions,
)
from nnlab.runs.write import metric_columns

Checkpoint = Callable[[int], dict[str, Any]]  # member -> that member's checkpoint state


class RunSink:
    """One run folder. Every evaluation appends its metrics row at once; checkpoints
    (``last.pt``, and ``best.pt`` when the selected metric improved) are written when
    ``train.checkpoint_every_s`` has passed since the last write, mid-epoch too (``fit``
    asks ``due()``), and at the end: a kill costs at most that much training, and a
    short run is not slowed by a checkpoint and its fsyncs at every evaluation. Rows
    past the last checkpoint are dropped and recomputed, bit for bit, by resume.
    """

    def __init__(self, run: RunDir, cfg: Config, tensorboard=None) -> None:
        self.run, self.cfg, self.tensorboard = run, cfg, tensorboard
        self.config = {"config": cfg.to_dict(), "name": cfg.name}  # made once per run
        self.every_s = cfg.train.checkpoint_every_s
        self.written = time.monotonic()
        self.best: dict[str, Any] | None = None  # the best checkpoint, until it is written
        self.unsaved = False  # evaluations since the last checkpoint

    def due(self) -> bool:
        return time.monotonic() - self.written >= self.every_s

    def evaluated(
        self, state, rows: list[dict], improved: list[bool], checkpoint: Checkpoint
    ) -> None:
        self.run.append_metrics(rows[0], sync=False)  # made durable with the next checkpoint
        now = self.every_s == 0 or self.due()
        ck = checkpoint(0) if now or improved[0] else None  # built once, used for both
        if improved[0]:  # a copy unless written now: the weights move on
            self.best = ck if now else copy.deepcopy(ck)
        if now:
            self.save(ck)
        else:
            self.unsaved = True
        if self.tensorboard is not None:  # the same row as scalars, after the files that matter
            self.tensorboard.log_row(rows[0])

    def save(self, checkpoint: dict[str, Any]) -> None:
        """metrics.csv made durable, then last.pt (and a pending best.pt): a crash in between
        leaves rows past the checkpoint, which resume drops and recomputes."""
        self.run.sync_metrics()
        save_checkpoint(self.run.checkpoints / "last.pt", {**checkpoint, **self.config})
        if self.best is not None:
            save_checkpoint(self.run.checkpoints / "best.pt", {**self.best, **self.config})
            self.best = None
        self.written, self.unsaved = time.monotonic(), False

    def finish(self, checkpoint: Checkpoint) -> None:
        """The end of training: last.pt of the state the run ends in, best.pt if pending."""
        if self.unsaved or self.best is not None:
            self.save(checkpoint(0))

    def best_weights(self) -> dict[str, Any]:
        return load_checkpoint(self.run.checkpoints / "best.pt")["model"]


class StackSink:
    """S run folders of a stack; rows and the best checkpoints are kept until ``finish``."""

    def __init__(self, runs: list[RunDir], cfgs: list[Config]) -> None:
        self.runs, self.cfgs = runs, cfgs
        self.rows: list[list[dict]] = [[] for _ in runs]
        self.best: list[dict | None] = [None] * len(runs)

    def due(self) -> bool:
        return False  # written once, at the end (a stack of small runs is redone, not resumed)

    def evaluated(
        self, state, rows: list[dict], improved: list[bool], checkpoint: Checkpoint
    ) -> None:
        for s, row in enumerate(rows):
            self.rows[s].append(row)
            if improved[s]:  # a copy now: the weights move on
                self.best[s] = checkpoint(s)

    def finish(self, checkpoint: Checkpoint) -> None:
        """Each member's metrics.csv, last.pt and best.pt (its own config in both)."""
        for s, (run, cfg) in enumerate(zip(self.runs, self.cfgs, strict=True)):
            run.write_metrics(self.rows[s])
            own = {"config": cfg.to_dict(), "name": cfg.name}
            save_checkpoint(run.checkpoints / "last.pt", {**checkpoint(s), **own})
            save_checkpoint(run.checkpoints / "best.pt", {**self.best[s], **own})


def provenance(
    cfg: Config,
    *,
    plan: dict[str, Any],
    device: str,
    n_params: int,
    n_train: int,
    n_test: int,
    threads: int | None,
    started: float,
    shared: dict[str, Any] | None = None,
    n_val: int | None = None,
) -> dict[str, Any]:
    """The summary keys every run records besides its results (any backend, lone or stacked)."""
    return {
        "seed": cfg.train.seed,
        "device": device,
        "backend": cfg.model.backend,
        "plan": plan,  # engine/plan.py: the path this run took, and why
        "world_size": plan.get("world_size", 1),
        "stacked": plan.get("members", 1),
        # what train.amp / train.channels_last / train.manual_step resolved to
        "amp_bf16": plan.get("amp_bf16", False),
        "channels_last": plan.get("channels_last", False),
        "manual_step": plan.get("step") == "manual",
        "threads": threads,
        "n_params": n_params,
        "n_train": n_train,
        "n_test": n_test,
        "n_val": n_val,  # data.val_fraction's held-out examples (None without a split)
        "preset": cfg.name,
        # a user's model or modules file: key, path, class, sha256 (config/user_code.py)
        "user_code": user_code_record(cfg.model),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        **(shared or shared_provenance()),
    }


def shared_provenance() -> dict[str, Any]:
    """What all runs of one process share; made once per stack (git_commit runs subprocesses)."""
    return {"command": command_line(), "versions": versions(), "git_commit": git_commit()}


def start_run(folder: Path, cfg: Config) -> RunDir:
    """Create the run folder with its resolved config and an empty metrics.csv."""
    run = RunDir(folder)
    run.create(to_toml(cfg), metric_columns(bool(cfg.data.val_fraction)))
    return run


def diverged_summary(error: str, train_seconds: float, info: dict[str, Any]) -> dict[str, Any]:
    """A diverged run is a result, not a crash: recorded so that sweeps report it and do not retry it."""
    return {
        "status": "diverged",
        "error": error,
        "final_test_acc": None,
        "best_test_acc": None,
        "train_seconds": round(train_seconds, 3),
        **info,
    }


def finish_run(
    run: RunDir,
    cfg: Config,
    result: Any,
    info: dict[str, Any],
    boundary: tuple[np.ndarray, ...] | None = None,
) -> dict[str, Any]:
    """curves.png, boundary.npz, then summary.json (last); returns the summary.

    ``boundary``: ``(x_train, y_train, x_test, y_test, predict)`` for 2-D inputs,
    where ``predict(points) -> class probabilities`` is the model the run reports.
    """
    from nnlab.reporting.plots import plot_curves

    plot_curves(
        result.history, run.path / "curves.png", title=f"{cfg.name} (seed {cfg.train.seed})"
    )
    if boundary is not None:
        write_boundary(run, *boundary)
    summary = completed_summary(result, info)
    run.write_summary(summary)  # last: a run is finished iff summary.json exists
    return summary


def write_boundary(
    run: RunDir, x_train, y_train, x_test, y_test, predict, resolution: int = 120
) -> None:
    """``boundary.npz``: the reported model's predictions on a grid over 2-D data, for the
    decision-boundary figures (reporting draws them from these arrays alone)."""
    from nnlab.reporting.plots import boundary_grid

    x_train, x_test = np.asarray(x_train, dtype=np.float32), np.asarray(x_test, dtype=np.float32)
    xx, yy, points = boundary_grid(np.concatenate([x_train, x_test]), resolution)
    prob = np.asarray(predict(points), dtype=np.float64)  # (R*R, C)
    save_arrays(
        run.path / "boundary.npz",
        {
            "xx": xx,
            "yy": yy,
            "prob": prob.max(1).reshape(xx.shape),
            "prob1": prob[:, 1].reshape(xx.shape),
            "pred": prob.argmax(1).reshape(xx.shape),
            "x_train": x_train,
            "y_train": np.asarray(y_train),
            "x_test": x_test,
            "y_test": np.asarray(y_test),
        },
    )
