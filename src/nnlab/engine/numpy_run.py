"""``model.backend = "numpy"``: the from-scratch MLP's runs, written like every other run.

The NumPy MLP keeps its own loop by design (``numpy_mlp/fit.py``: the point is
code written from the equations, without torch); its run folders go through
the same writer as torch runs (``engine/sinks.py``: provenance, metrics rows,
summary, curves, boundary). Weights are ``checkpoints/last.npz`` and
``best.npz`` (``W0, b0, W1, b1, ...`` with ``W`` of shape (in, out) for
``x @ W + b``, plus ``epoch``, ``step``, ``best_test_acc``, ``activation`` and
``config`` as a JSON string), loaded with ``allow_pickle=False``
(``nnlab.numpy_mlp.mlp.load_model``). They are written once, when training
ends: runs this small are redone, not resumed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.config import Config, to_toml
from nnlab.engine.progress import Progress
from nnlab.engine.sinks import (
    diverged_summary,
    finish_run,
    provenance,
    shared_provenance,
    start_run,
)
from nnlab.errors import DataError, TrainingDiverged
from nnlab.numpy_mlp.fit import Arrays, NumpyFit, fit_stacked, to_arrays
from nnlab.numpy_mlp.mlp import MLP
from nnlab.runs import RunDir, save_arrays


def run_numpy(
    cfgs: list[Config], bundles: list[Any], outs: list[Path], *, progress: str | None = None
) -> list[dict[str, Any]]:
    """Runs that differ only in their seed, trained as one stack (one run: S = 1).

    ``bundles``: each run's ``DataBundle``, or its ``Arrays`` when the caller checked it.

    A lone run appends a metrics row at each evaluation (and shows progress); a
    stack writes its members' rows at the end. Bad data fails before any folder
    is created. A lone run that diverges is recorded (status "diverged") and
    raises ``TrainingDiverged``; a stack records each diverged member.
    """
    bar = Progress(cfgs[0].train.epochs, cfgs[0].name, progress) if len(cfgs) == 1 else None
    try:  # bundles, or arrays already checked by to_arrays
        data = [b if isinstance(b, Arrays) else to_arrays(b) for b in bundles]
    except DataError:
        if bar is not None:
            bar.close()  # a progress bar may already be on the terminal
        raise
    runs = [start_run(out, cfg) for out, cfg in zip(outs, cfgs, strict=True)]
    started, shared = time.time(), shared_provenance()
    lone = len(cfgs) == 1
    plan = {
        "backend": "numpy",
        "step": "numpy",
        "members": len(cfgs),
        "why": {"backend": "model.backend=numpy"},
    }
    fits = fit_stacked(
        cfgs,
        data,
        progress=bar,
        on_eval=(lambda _s, row: runs[0].append_metrics(row)) if lone else None,
    )
    summaries = []
    for cfg, run, fit, d in zip(cfgs, runs, fits, data, strict=True):
        info = provenance(
            cfg,
            plan=plan,
            device="cpu",
            n_params=_n_params(cfg, d),
            n_train=len(d.y_train),
            n_test=len(d.y_test),
            threads=None,
            started=started,
            shared=shared,
            n_val=len(d.y_val) if d.y_val is not None else None,
        )
        summaries.append(_write(cfg, run, fit, d, info, write_metrics=not lone))
    if cfgs[0].train.tensorboard:  # its loop is not fit's: replay the finished run's rows
        from nnlab.engine.tensorboard_log import log_history

        log_history(runs[0].path, cfgs[0], to_toml(cfgs[0]), runs[0].read_metrics())
    if lone and fits[0].error is not None:
        raise TrainingDiverged(fits[0].error)
    return summaries


def _n_params(cfg: Config, data: Arrays) -> int:
    widths = [data.x_train.shape[1], *cfg.model.hidden, data.n_classes]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def _write(
    cfg: Config,
    run: RunDir,
    fit: NumpyFit,
    data: Arrays,
    info: dict[str, Any],
    *,
    write_metrics: bool,
) -> dict[str, Any]:
    """Finish one folder: metrics (unless appended already), checkpoints, then ``finish_run``."""
    if write_metrics:
        run.write_metrics(fit.history)
    meta = {
        "step": fit.steps,
        "best_test_acc": fit.best_test_acc,
        "activation": cfg.model.activation,
        "config": json.dumps(cfg.to_dict()),
    }
    if fit.history:
        last_epoch = fit.history[-1]["epoch"]
        save_arrays(run.checkpoints / "last.npz", {**fit.last, **meta, "epoch": last_epoch})
        save_arrays(run.checkpoints / "best.npz", {**fit.best, **meta, "epoch": fit.best_epoch})
    if fit.error is not None:
        summary = diverged_summary(fit.error, fit.train_seconds, info)
        run.write_summary(summary)
        return summary
    boundary = None
    if data.x_train.shape[1] == 2:  # the model the run reports: best when it restored best
        restored = "restored the best" in fit.stop_reason
        if cfg.model.modules:  # the user's modules drew it: their forward, the run's weights
            predict = _user_predictor(cfg, data, fit.best if restored else fit.last)
            boundary = (data.x_train, data.y_train, data.x_test, data.y_test, predict)
            return finish_run(run, cfg, fit, info, boundary)
        model = MLP(
            2,
            cfg.model.hidden,
            data.n_classes,
            activation=cfg.model.activation,
            rng=0,
            dtype=np.float32,
        )
        model.load_state_dict(fit.best if restored else fit.last)
        predict = lambda x: _softmax(model.forward(np.asarray(x, dtype=model.params.dtype)))  # noqa: E731
        boundary = (data.x_train, data.y_train, data.x_test, data.y_test, predict)
    return finish_run(run, cfg, fit, info, boundary)


def _user_predictor(cfg: Config, data: Arrays, state: dict[str, np.ndarray]):
    """Class probabilities ``(P, C)`` of the network of the user's modules with weights ``state``."""
    from nnlab.numpy_mlp.user_modules import UserModulesMLP

    net = UserModulesMLP(
        cfg.model.modules,
        data.x_train.shape[1],
        cfg.model.hidden,
        data.n_classes,
        activation=cfg.model.activation,
        rng=0,
        dtype=np.float32,
    )
    net.load_lone_state(state)
    return lambda x: _softmax(net.forward(np.asarray(x, dtype=np.float32)[None])[0])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
