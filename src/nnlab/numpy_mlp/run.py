"""``model.backend = "numpy"``: the NumPy MLP trained from a Config into a run folder.

The run folder is the torch backend's (config.toml, metrics.csv with
``runs.METRIC_COLUMNS``, summary.json with the same keys, curves.png), except
that weights are saved as ``checkpoints/last.npz`` and ``best.npz``
(``np.savez``: ``W0, b0, W1, b1, ...`` with ``W`` of shape (in, out) for
``x @ W + b``, plus ``epoch``, ``step``, ``best_test_acc``, ``activation`` and
``config`` as a JSON string). Load them with ``load_model`` or
``np.load(path, allow_pickle=False)``. They are written once, when training
ends: runs this small are redone, not resumed.

``nnlab.config.validate`` rejects what this backend lacks (gelu, dropout,
batchnorm, the onecycle schedule). ``run_numpy_training`` is one run (``nnlab train``); ``run_numpy_stacked``
trains the seeds of one sweep setting together (see ``fit.py``) and writes one
folder per seed, as the lone runs would.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.config import Config, to_toml
from nnlab.errors import DataError, RunError, TrainingDiverged
from nnlab.numpy_mlp.fit import DTYPE, Arrays, NumpyFit, fit_stacked
from nnlab.numpy_mlp.mlp import MLP
from nnlab.runs import (
    METRIC_COLUMNS,
    RunDir,
    _fmt,
    atomic_write_bytes,
    atomic_write_text,
    command_line,
    completed_summary,
)


def to_arrays(bundle: Any) -> Arrays:
    """A ``DataBundle`` (torch tensors, read with ``.numpy()``) as checked arrays; bad data is a DataError."""
    x_tr, y_tr, x_te, y_te = (
        np.asarray(t.numpy() if hasattr(t, "numpy") else t)
        for t in (bundle.x_train, bundle.y_train, bundle.x_test, bundle.y_test)
    )
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.ndim != 2:
            raise DataError(
                f"data: x_{split} must be (n_samples, n_features) for the numpy MLP, got shape {x.shape}"
            )
        if len(x) != len(y) or len(x) == 0:
            raise DataError(
                f"data: the {split} split has {len(x)} inputs and {len(y)} labels; need as many, at least one"
            )
        if not np.isfinite(x).all():
            raise DataError(
                f"data: x_{split} holds NaN or inf values; the numpy MLP needs finite features"
            )
        if y.min() < 0 or y.max() >= bundle.n_classes:
            raise DataError(f"data: {split} labels must be class indices 0..{bundle.n_classes - 1}")
    if len(np.unique(y_tr)) < 2:
        raise DataError(
            "data: the training split holds only one class; a classifier needs at least two"
        )
    return Arrays(
        x_tr.astype(DTYPE),
        y_tr.astype(np.int64),
        x_te.astype(DTYPE),
        y_te.astype(np.int64),
        bundle.n_classes,
    )


# --------------------------------------------------------------------------- checkpoints


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` to memory, then an atomic write: a crash leaves the old file or the new one."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays only (``allow_pickle=False``): loading a checkpoint never runs code."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except (ValueError, OSError, EOFError) as exc:
        raise RunError(f"{path}: not a loadable nnlab numpy checkpoint ({exc})") from None


def load_model(path: Path) -> MLP:
    """The MLP saved in a ``last.npz`` / ``best.npz`` checkpoint."""
    state = load_npz(path)
    n_layers = sum(1 for k in state if k[0] == "W" and k[1:].isdigit())
    sizes = [state["W0"].shape[0]] + [state[f"W{i}"].shape[1] for i in range(n_layers)]
    model = MLP(
        sizes[0],
        sizes[1:-1],
        sizes[-1],
        activation=str(state["activation"]),
        rng=0,
        dtype=state["W0"].dtype.type,
    )
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- run folders


def _provenance(
    cfg: Config, data: Arrays, started: float, shared: dict[str, Any]
) -> dict[str, Any]:
    """The summary keys ``nnlab.train.run_training`` records besides the results."""
    n_params = sum(
        a * b + b
        for a, b in zip(
            [data.x_train.shape[1], *cfg.model.hidden],
            [*cfg.model.hidden, data.n_classes],
            strict=True,
        )
    )
    return {
        "seed": cfg.train.seed,
        "device": "cpu",
        "world_size": 1,
        "amp_bf16": False,  # NumPy: float64 throughout
        "channels_last": False,
        "manual_step": False,
        "threads": None,
        "n_params": n_params,
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "preset": cfg.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "backend": "numpy",
        **shared,
    }


def _shared_provenance() -> dict[str, Any]:
    # Once per call, not per seed: git_commit runs two subprocesses.
    from nnlab.runs import git_commit, versions

    return {"command": command_line(), "versions": versions(), "git_commit": git_commit()}


def write_run(
    cfg: Config, run: RunDir, fit: NumpyFit, info: dict[str, Any], *, write_metrics: bool
) -> dict[str, Any]:
    """Finish a run folder: metrics (unless appended already), checkpoints, curves, summary last."""
    if write_metrics:  # one write for every row (appending row by row would fsync each)
        lines = [",".join(METRIC_COLUMNS)] + [
            ",".join(_fmt(r.get(c)) for c in METRIC_COLUMNS) for r in fit.history
        ]
        atomic_write_text(run.metrics_path, "\n".join(lines) + "\n")
    meta = {
        "step": fit.steps,
        "best_test_acc": fit.best_test_acc,
        "activation": cfg.model.activation,
        "config": json.dumps(cfg.to_dict()),
    }
    if fit.history:
        save_npz(
            run.checkpoints / "last.npz", {**fit.last, **meta, "epoch": fit.history[-1]["epoch"]}
        )
        save_npz(run.checkpoints / "best.npz", {**fit.best, **meta, "epoch": fit.best_epoch})
    # as the torch backend: a diverged run is a result, recorded, not retried
    if fit.error is not None:
        summary = {
            "status": "diverged",
            "error": fit.error,
            "final_test_acc": None,
            "best_test_acc": None,
            "train_seconds": round(fit.train_seconds, 3),
            **info,
        }
        run.write_summary(summary)
        return summary
    from nnlab.plots import plot_curves

    plot_curves(fit.history, run.path / "curves.png", title=f"{cfg.name} (seed {cfg.train.seed})")
    summary = completed_summary(fit, info)  # NumpyFit has no compile_seconds: recorded as None
    run.write_summary(summary)  # last: a run is finished iff summary.json exists
    return summary


def run_numpy_training(
    cfg: Config, bundle: Any, out: Path, *, progress: Any = None
) -> dict[str, Any]:
    """One run into the folder ``out``; returns its summary, as ``nnlab.train.run_training`` does.

    Bad config or data fails before the folder is created. A diverged run is
    recorded (status "diverged") and then raises ``TrainingDiverged``.
    """
    try:
        data = to_arrays(bundle)
    except DataError:
        if progress is not None:
            progress.close()  # a progress bar may already be on the terminal
        raise
    run = RunDir(out)
    run.create(to_toml(cfg))
    info = _provenance(cfg, data, time.time(), {**_shared_provenance(), "stacked": 1})
    fit = fit_stacked(
        [cfg], [data], progress=progress, on_eval=lambda _s, row: run.append_metrics(row)
    )[0]
    summary = write_run(cfg, run, fit, info, write_metrics=False)
    if fit.error is not None:
        raise TrainingDiverged(fit.error)
    return summary


def run_numpy_stacked(
    cfgs: Sequence[Config], bundles: Sequence[Any], outs: Sequence[Path]
) -> list[dict[str, Any]]:
    """Runs that differ only in their seed, trained as one stack; one finished folder per run.

    ``train_seconds`` of each is its share (1/S) of the stack's training time,
    and ``stacked`` says how many networks trained together.
    """
    data = [to_arrays(b) for b in bundles]
    runs = [RunDir(out) for out in outs]
    for cfg, run in zip(cfgs, runs, strict=True):
        run.create(to_toml(cfg))
    started = time.time()
    fits = fit_stacked(cfgs, data)
    shared = {**_shared_provenance(), "stacked": len(cfgs)}
    return [
        write_run(cfg, run, fit, _provenance(cfg, d, started, shared), write_metrics=True)
        for cfg, run, fit, d in zip(cfgs, runs, fits, data, strict=True)
    ]
