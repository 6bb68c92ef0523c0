"""The training loop of ``model.backend = "numpy"``: S runs of one setting as one stack.

``fit_stacked`` trains one network per config; the configs may differ only in
their seed (and so in their data, initial weights and batch order). Network s
sees exactly what a lone run with its seed sees, and every operation is
independent across the stack, so its results equal the lone run's to float
rounding (``tests/test_numpy_mlp_run.py``), while S networks cost the same
number of NumPy calls per step as one. That is what makes a 10-seed sweep fast:
at this size the cost of a step is per call, not per network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnlab.config import Config
from nnlab.errors import DataError
from nnlab.numpy_mlp.mlp import MLP
from nnlab.numpy_mlp.modules import CrossEntropy, one_hot
from nnlab.numpy_mlp.optim import build_optimizer, clip_grad_norm, scheduled_lr

DTYPE = np.float32  # like the torch backend; the gradient checks run the same code in float64


@dataclass
class Arrays:
    """One run's data as NumPy arrays: x (N, D) float32, y (N,) int64 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    x_val: np.ndarray | None = None  # data.val_fraction: what selection looks at
    y_val: np.ndarray | None = None


@dataclass
class NumpyFit:
    """What ``fit_stacked`` returns for each network; mirrors ``nnlab.engine.loop.FitResult``."""

    history: list[dict[str, float]]
    epochs: int
    steps: int
    train_seconds: float  # this network's share of the stack's time
    best_test_acc: float
    best_epoch: int
    stop_reason: str
    final: dict[str, float]
    last: dict[str, np.ndarray] = field(repr=False)  # weights at the last (good) evaluation
    best: dict[str, np.ndarray] = field(repr=False)  # weights at the best evaluation
    error: str | None = None  # set when this network's loss became NaN or inf
    eval_seconds: float = 0.0  # the part of train_seconds spent evaluating (this network's share)
    best_val_acc: float | None = None  # data.val_fraction: the best val_acc (what selection used)
    selected_on: str = "test_acc"


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
        *(
            (np.asarray(bundle.x_val.numpy()).astype(DTYPE), np.asarray(bundle.y_val.numpy()))
            if getattr(bundle, "x_val", None) is not None
            else ()
        ),
    )


def fit_stacked(
    cfgs: Sequence[Config],
    data: Sequence[Arrays],
    *,
    progress: Any = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> list[NumpyFit]:
    """Train one network per config, all at once; evaluate every ``eval_every`` epochs and after the last.

    ``progress`` has ``update(epoch, row)`` and ``close()`` (shows network 0);
    ``on_eval(s, row)`` receives every metrics row of network s. A network whose
    loss turns NaN stops recording (its ``error`` says why); the others go on.
    Early stopping (``patience``, ``target_acc``) needs a lone network.
    """
    cfg, n_net = cfgs[0], len(cfgs)
    t, o, sch = cfg.train, cfg.optim, cfg.schedule
    if n_net > 1 and (t.patience or t.target_acc):
        raise ValueError("stacked networks cannot stop early one by one; train them alone")
    seeds = [c.train.seed for c in cfgs]
    # Two independent streams per seed: initial weights and batch order.
    streams = [
        [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)] for seed in seeds
    ]
    x_train, y_train = (
        np.stack([d.x_train for d in data]),
        np.stack([d.y_train for d in data]),
    )  # (S, N, D), (S, N)
    # Targets once, not per step: one-hot (and smoothed), gathered with x each epoch.
    t_train = one_hot(y_train, data[0].n_classes, t.label_smoothing, DTYPE)  # (S, N, C)
    x_test, y_test = np.stack([d.x_test for d in data]), np.stack([d.y_test for d in data])
    validating = data[0].x_val is not None  # data.val_fraction: select on val_acc, not test_acc
    key = "val_acc" if validating else "test_acc"
    if validating:
        x_val, y_val = np.stack([d.x_val for d in data]), np.stack([d.y_val for d in data])
    n, n_features = x_train.shape[1:]
    net_args = (n_features, cfg.model.hidden, data[0].n_classes)
    inits = [init for init, _ in streams]
    if cfg.model.modules:  # the user's own modules (user_modules.py): one network, not a stack
        from nnlab.numpy_mlp.user_modules import build_user_network

        if n_net > 1:
            raise ValueError("a user's model.modules trains one network at a time")
        model, criterion, test_criterion = build_user_network(
            cfg.model.modules, *net_args, activation=cfg.model.activation, rng=inits, dtype=DTYPE
        )
    else:
        model = MLP(*net_args, activation=cfg.model.activation, stack=n_net, rng=inits, dtype=DTYPE)
        criterion, test_criterion = CrossEntropy(), CrossEntropy()  # smoothing is in t_train
    optimizer = build_optimizer(
        o.name,
        model.params,
        model.grads,
        lr=o.lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
        nesterov=o.nesterov,
        alpha=o.alpha,
        betas=tuple(o.betas),
    )
    total_steps = t.epochs * math.ceil(n / t.batch_size)

    def lr_at(epoch: int, step: int) -> float:
        return scheduled_lr(
            sch.name,
            o.lr,
            epoch=epoch,
            step=step,
            total_steps=total_steps,
            step_size=sch.step_size,
            gamma=sch.gamma,
            min_lr=sch.min_lr,
        )

    histories: list[list[dict[str, float]]] = [[] for _ in range(n_net)]
    errors: list[str | None] = [None] * n_net
    best_acc, best_epoch = np.full(n_net, -1.0), np.zeros(n_net, dtype=int)
    best_test = np.full(n_net, -1.0)  # informational when selecting on val_acc
    best_params, good_params = model.params.copy(), model.params.copy()
    since_best, step, epoch, stop_reason, eval_seconds = 0, 0, 0, "completed", 0.0
    start = time.perf_counter()
    try:
        # A diverged network's NaNs stay in its own slice; do not warn about them at every step.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(1, t.epochs + 1):
                # Each network's own order for this epoch, then one gather: batches are views.
                perm = np.stack([order.permutation(n) for _, order in streams])  # (S, N)
                rows = np.arange(n_net)[:, None]
                xe, ye, te = x_train[rows, perm], y_train[rows, perm], t_train[rows, perm]
                is_eval = epoch % t.eval_every == 0 or epoch == t.epochs
                loss_sum, correct = np.zeros(n_net), np.zeros(n_net)
                for lo in range(0, n, t.batch_size):
                    batch = slice(lo, lo + t.batch_size)
                    optimizer.lr = lr_at(epoch, step)
                    logits = model.forward(xe[:, batch])  # (S, B, C)
                    loss = criterion.forward(logits, te[:, batch])  # (S,): each network's mean loss
                    model.backward(criterion.backward(), input_grad=False)
                    if t.clip_norm > 0:
                        clip_grad_norm(model.grads, t.clip_norm)
                    optimizer.step()
                    step += 1
                    if is_eval:
                        yb = ye[:, batch]
                        loss_sum += loss * yb.shape[1]
                        correct += (logits.argmax(-1) == yb).sum(-1)
                if not is_eval:
                    if progress is not None:
                        progress.update(epoch, None)
                    continue
                eval_start = time.perf_counter()
                test_logits = model.forward(x_test)
                test_loss = test_criterion.forward(test_logits, y_test)
                test_acc = (test_logits.argmax(-1) == y_test).mean(-1)
                if validating:
                    val_logits = model.forward(x_val)
                    val_loss = test_criterion.forward(val_logits, y_val)
                    val_acc = (val_logits.argmax(-1) == y_val).mean(-1)
                elapsed = time.perf_counter() - start
                eval_seconds += elapsed - (eval_start - start)
                for s in range(n_net):
                    if errors[s] is not None:
                        continue
                    row = {
                        "epoch": epoch,
                        "step": step,
                        "train_loss": float(loss_sum[s]) / n,
                        "train_acc": float(correct[s]) / n,
                        "test_loss": float(test_loss[s]),
                        "test_acc": float(test_acc[s]),
                        "lr": lr_at(epoch, step),
                        "elapsed_s": elapsed,
                    }
                    if validating:
                        row.update(val_loss=float(val_loss[s]), val_acc=float(val_acc[s]))
                    if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
                        errors[s] = (
                            f"loss became {row['train_loss']} by epoch {epoch} (step {step}); "
                            "try a lower optim.lr or gradient clipping (train.clip_norm=1)"
                        )
                        continue
                    histories[s].append(row)
                    good_params[s] = model.params[s]
                    if on_eval is not None:
                        on_eval(s, row)
                    best_test[s] = max(best_test[s], row["test_acc"])
                    if row[key] > best_acc[s]:
                        best_params[s], best_acc[s], best_epoch[s] = (
                            model.params[s],
                            row[key],
                            epoch,
                        )
                        since_best = 0
                    else:
                        since_best += 1  # read only when there is one network
                if all(e is not None for e in errors):
                    break
                if progress is not None and histories[0]:
                    progress.update(epoch, histories[0][-1])
                if t.target_acc and (val_acc if validating else test_acc)[0] >= t.target_acc:
                    on = f" ({key})" if validating else ""
                    stop_reason = f"reached train.target_acc {t.target_acc}{on} at epoch {epoch}"
                    break
                if t.patience and since_best >= t.patience:
                    stop_reason = f"early stop: no better {key} for {t.patience} evaluations"
                    break
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start

    finals = [
        {k: h[-1][k] for k in ("test_acc", "test_loss", "val_acc", "val_loss") if k in h[-1]}
        if h
        else {}
        for h in histories
    ]
    reasons = [stop_reason] * n_net
    if (
        t.patience
        and t.restore_best
        and histories[0]
        and best_epoch[0] != histories[0][-1]["epoch"]
    ):
        model.params[...] = best_params
        logits = model.forward(x_test)
        finals[0] = {
            "test_acc": float((logits.argmax(-1) == y_test).mean(-1)[0]),
            "test_loss": float(test_criterion.forward(logits, y_test)[0]),
        }
        if validating:
            logits = model.forward(x_val)
            finals[0]["val_acc"] = float((logits.argmax(-1) == y_val).mean(-1)[0])
            finals[0]["val_loss"] = float(test_criterion.forward(logits, y_val)[0])
        reasons[0] += f"; restored the best checkpoint (epoch {best_epoch[0]})"
    return [
        NumpyFit(
            histories[s],
            epoch,
            step,
            seconds / n_net,
            float(best_test[s]),
            int(best_epoch[s]),
            reasons[s],
            finals[s],
            last=lone_state(model, good_params[s]),
            best=lone_state(model, best_params[s]),
            error=errors[s],
            eval_seconds=eval_seconds / n_net,
            best_val_acc=float(best_acc[s]) if validating else None,
            selected_on=key,
        )
        for s in range(n_net)
    ]


def lone_state(model: MLP, flat: np.ndarray) -> dict[str, np.ndarray]:
    """One network's flat parameter vector as ``W0, b0, ...`` arrays (``MLP.state_dict`` of a lone network)."""
    lone = MLP(
        model.sizes[0],
        model.sizes[1:-1],
        model.sizes[-1],
        activation=model.activation,
        rng=0,
        dtype=flat.dtype.type,
    )
    lone.params[...] = flat
    return lone.state_dict()
