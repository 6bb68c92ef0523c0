"""Resume and warm starts: ``load_resume_state`` reads what an unfinished run needs to go
on from ``last.pt`` (``engine.run.resume_training`` continues it); ``load_initial_weights``
starts a new run from an earlier run's weights (``train.init_from``)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnlab.config import Config
from nnlab.config.user_code import user_code_problem
from nnlab.engine import distributed
from nnlab.errors import ConfigError
from nnlab.runs import RunDir, load_checkpoint
from nnlab.runs.files import weight_mismatches
from nnlab.runs.write import folder_lock, never_started


def load_initial_weights(model: nn.Module, source: str) -> None:
    """``train.init_from``: start ``model`` from the weights of an earlier run (its ``last.pt``) or a checkpoint.

    Only the weights: the optimizer, schedule and counters start fresh, as in any
    new run. Loaded with ``weights_only=True``; a file that does not fit the model
    is a one-line ConfigError naming what differs.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)  # a missing or unreadable file: one-line RunError
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ConfigError(f"train.init_from: {path} holds no model weights")
    problems = weight_mismatches(weights, model)
    if problems:
        raise ConfigError(
            f"train.init_from: the weights in {path} do not fit this model ({'; '.join(problems[:3])}); "
            "the model.* settings must match that run's"
        )
    model.load_state_dict(weights)


def load_resume_state(
    out: Path, requested: Config | None = None
) -> tuple[Config, dict[str, Any] | None]:
    """The saved config of the unfinished run in ``out`` and its ``last.pt`` state (None if it has none yet).

    Repairs ``metrics.csv`` to the checkpoint: rows past it (written just before
    a crash) and a torn last line are dropped, and are recomputed on resume.
    ``requested``, when given, must match the saved config (the device may differ).
    Done under ``out``'s lock (a run another process is writing: one line, nothing touched).
    """
    # no config.toml: refused below without a write, so no lock (nor lock file) is needed
    mine = distributed.is_main() and (Path(out) / "config.toml").is_file()
    with folder_lock(out) if mine else nullcontext():
        return _load_resume_state(out, requested)


def _load_resume_state(
    out: Path, requested: Config | None = None
) -> tuple[Config, dict[str, Any] | None]:
    from nnlab.config import load_config
    from nnlab.errors import RunError
    from nnlab.runs import repair_metrics

    run = RunDir(out)
    config = run.path / "config.toml"
    if (
        not config.is_file()
        and run.path.is_dir()
        and any(run.path.iterdir())
        and never_started(run.path)
    ):
        raise RunError(
            f"{out}: its creation was interrupted before config.toml was written, so there is "
            f"nothing to resume; start it again with nnlab train ... --out {out}"
        )
    if not (run.path / "config.toml").is_file():
        raise RunError(f"{out}: not an nnlab run folder (no config.toml)")
    if run.finished:
        raise RunError(f"{out}: the run is finished (summary.json exists); nothing to resume")
    saved = load_config(str(run.path / "config.toml"))
    problem = user_code_problem(saved.model)  # the user's file, against its recorded sha256
    if problem is not None:
        raise RunError(
            f"{out}: {problem}; resume needs the very code the run started with; "
            "train it again into a new --out"
        )
    for stale in (
        [*run.path.glob(".*.tmp"), *run.checkpoints.glob(".*.tmp")] if distributed.is_main() else []
    ):
        if stale.is_file():  # a temp file from a write the crash interrupted; its target is intact
            stale.unlink()
    state = (
        load_checkpoint(run.checkpoints / "last.pt", need="resume")
        if (run.checkpoints / "last.pt").exists()
        else None
    )
    if state is not None:
        saved.name = state.get("name", saved.name)
        if state.get("config") != saved.to_dict():
            raise RunError(f"{out}: checkpoints/last.pt was not written by this run's config.toml")
    if requested is not None:
        mine, theirs = requested.to_dict(), saved.to_dict()
        mine["train"].pop("device"), theirs["train"].pop("device")
        diff = [f"{s}.{k}" for s in mine for k in mine[s] if mine[s][k] != theirs[s].get(k)]
        if diff:
            raise RunError(
                f"{out}: was trained with a different config ({', '.join(diff[:5])} differ); resume it without --set, or start a new --out"
            )
        saved = saved.replace({"train.device": requested.train.device})
    last_eval = state["row"]["epoch"] if state is not None and state.get("row") else 0
    if state is not None and not distributed.is_main():
        # Under torchrun every rank resumes from the same last.pt, but only rank 0 touches the
        # folder; the others need just the checkpoint's row (fit compares its epoch).
        state["history"] = [state["row"]] if last_eval else []
    elif state is not None:
        # rows up to the checkpoint's last evaluation (a mid-epoch checkpoint may come later)
        history = repair_metrics(run.metrics_path, up_to_epoch=last_eval)
        if last_eval and (not history or history[-1]["epoch"] != last_eval):
            raise RunError(f"{run.metrics_path}: has no row for the checkpoint's epoch {last_eval}")
        state["history"] = [*history[:-1], state["row"]] if last_eval else []
    return saved, state
