"""Optimizers and learning-rate schedules by name: one table each.

``OPTIMIZERS`` and ``SCHEDULES`` map a config name to its builder; config
validation reads their names (this module imports torch only inside the
builders, so reading them stays light). Add an optimizer or a schedule by
adding a builder and a row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from nnlab.config.sections import OptimConfig, ScheduleConfig


def _fast(params, cfg: OptimConfig, fusable: bool = True) -> dict[str, bool]:
    """``fused=True`` (SGD, Adam, AdamW on CPU and CUDA) does the whole update in one kernel:
    for small models the optimizer's per-step Python and dispatch overhead is a large share
    of the step. Elsewhere ``foreach=True`` batches the update over tensors."""
    ok = fusable and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return {"fused": True} if ok else {"foreach": True}


def _sgd(params, cfg: OptimConfig):
    import torch

    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        **_fast(params, cfg),
    )


def _adam(params, cfg: OptimConfig):
    import torch

    betas = tuple(cfg.betas)
    fast = _fast(params, cfg)
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, **fast)


def _adamw(params, cfg: OptimConfig):
    import torch

    betas = tuple(cfg.betas)
    fast = _fast(params, cfg)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, **fast)


def _rmsprop(params, cfg: OptimConfig):
    import torch

    return torch.optim.RMSprop(
        params,
        lr=cfg.lr,
        alpha=cfg.alpha,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        foreach=True,  # RMSprop has no fused kernel
    )


OPTIMIZERS = {"sgd": _sgd, "adam": _adam, "adamw": _adamw, "rmsprop": _rmsprop}


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.name`` names, over the parameters that require gradients."""
    return OPTIMIZERS[cfg.name]([p for p in params if p.requires_grad], cfg)


# A schedule builder: (optimizer, cfg, total steps) -> (scheduler or None, steps per batch?).
# ``step`` decays per epoch; cosine, one-cycle and triangle per batch.


def _none(optimizer, cfg: ScheduleConfig, total: int):
    return None, False


def _step(optimizer, cfg: ScheduleConfig, total: int):
    import torch

    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.step_size, gamma=cfg.gamma
    ), False


def _cosine(optimizer, cfg: ScheduleConfig, total: int):
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=total, eta_min=cfg.min_lr
    ), True


def _onecycle(optimizer, cfg: ScheduleConfig, total: int):
    import torch

    max_lr = [g["lr"] for g in optimizer.param_groups]
    # torch ends the warm-up at step pct_start * total - 1 and divides by that: with a warm-up
    # of exactly one step (e.g. 0.25 of 4 steps) that is 0 / 0. A hair less warm-up is the
    # limit torch's formula tends to there: the run starts at the peak rate, then anneals.
    pct_start = cfg.pct_start
    while float(pct_start * total) - 1 == 0:
        pct_start = math.nextafter(pct_start, 0.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total, pct_start=pct_start
    ), True


def _triangle(optimizer, cfg: ScheduleConfig, total: int):
    """Linear up from ``start_factor * lr`` to lr at ``pct_start``, then linear down to ``min_lr``."""
    import torch

    peak, lr = max(1, round(cfg.pct_start * total)), optimizer.param_groups[0]["lr"]
    ends = (cfg.start_factor, cfg.min_lr / lr)  # as shares of optim.lr

    def factor(i: int) -> float:
        if i < peak:
            return ends[0] + (1 - ends[0]) * i / peak
        return 1 + (ends[1] - 1) * min(1.0, (i - peak) / max(1, total - peak))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True


SCHEDULES = {
    "none": _none,
    "step": _step,
    "cosine": _cosine,
    "onecycle": _onecycle,
    "triangle": _triangle,
}


def build_scheduler(optimizer, cfg: ScheduleConfig, epochs: int, steps_per_epoch: int):
    """``(scheduler, per_batch)``: the schedule ``cfg.name`` names and whether it steps per batch."""
    return SCHEDULES[cfg.name](optimizer, cfg, max(1, epochs * steps_per_epoch))
