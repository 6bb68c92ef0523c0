"""Checks of a user's torch model (``nnlab check FILE.py:Class``), before any training.

On the CPU, in float32, from one seed:

- ``output shape``: logits ``(B, n_classes)`` for a batch of ``B`` inputs;
- ``parameters``: how many it trains (none is a failure);
- ``gradients``: one backward pass of the cross-entropy reaches every parameter
  (a gradient that is missing, all zero or not finite names the parameter);
- ``overfit``: Adam on one small batch of random inputs with balanced random labels
  reaches 100% training accuracy (in eval mode) within ``steps`` steps: a model that
  cannot memorise 16 examples has a bug (a detached layer, a wrong output, a frozen
  parameter) long before it has a tuning problem.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.errors import ConfigError
from nnlab.models.user import check_logits, construct_model

OVERFIT_BATCH = 16
OVERFIT_LR = 1e-2  # fast to memorise with; a wrong model still cannot


@dataclass
class ModelCheck:
    """One check of one model: ``status`` is pass, fail or error; ``value`` what was measured."""

    model: str
    check: str
    status: str
    value: float | None = None
    detail: str = ""


def check_model(
    cls: type[nn.Module],
    kwargs: dict[str, Any],
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    seed: int = 0,
    steps: int = 500,
) -> list[ModelCheck]:
    """The checks above, in order; a model that cannot be built or run is one ``error`` row."""
    name = cls.__name__
    torch.manual_seed(seed)
    try:
        model = construct_model(cls, kwargs, input_shape, n_classes, key=name)
    except ConfigError as exc:
        return [ModelCheck(name, "construct", "error", detail=str(exc))]
    rows = []
    try:
        check_logits(model, input_shape, n_classes, key=name)
        rows.append(ModelCheck(name, "output shape", "pass", detail=f"(2, {n_classes}) logits"))
    except ConfigError as exc:
        return [ModelCheck(name, "output shape", "fail", detail=str(exc).partition(": ")[2])]
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    count = sum(p.numel() for _, p in trained)
    rows.append(
        ModelCheck(
            name,
            "parameters",
            "pass" if count else "fail",
            float(count),
            f"{count:,} trained in {len(trained)} tensors" if count else "nothing to train",
        )
    )
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((OVERFIT_BATCH, *input_shape), generator=generator)
    y = torch.arange(OVERFIT_BATCH) % n_classes
    y = y[torch.randperm(OVERFIT_BATCH, generator=generator)]
    try:
        rows.append(_gradients(name, model, trained, x, y))
        if count:
            rows.append(_overfit(name, model, x, y, steps))
    except Exception as exc:  # the user's forward or backward
        from nnlab.models.user_code import raised

        rows.append(ModelCheck(name, "training step", "error", detail=raised(exc)))
    return rows


def _gradients(name: str, model: nn.Module, trained, x, y) -> ModelCheck:
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    missing = [n for n, p in trained if p.grad is None]
    broken = [n for n, p in trained if p.grad is not None and not torch.isfinite(p.grad).all()]
    zero = [n for n, p in trained if p.grad is not None and not p.grad.any()]
    problems = [
        *(f"{n}: no gradient" for n in missing),
        *(f"{n}: not finite" for n in broken),
        *(f"{n}: all zero" for n in zero),
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return ModelCheck(
            name, "gradients", "fail", float(len(problems)), "; ".join(problems[:3]) + more
        )
    return ModelCheck(name, "gradients", "pass", 0.0, f"all {len(trained)} parameter tensors")


def _overfit(name: str, model: nn.Module, x, y, steps: int) -> ModelCheck:
    optimizer = torch.optim.Adam(model.parameters(), lr=OVERFIT_LR)
    start, acc = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step % 10 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                acc = (model(x).argmax(-1) == y).float().mean().item()
            if acc == 1.0:
                seconds = time.perf_counter() - start
                return ModelCheck(
                    name,
                    "overfit",
                    "pass",
                    float(step),
                    f"100% of {len(y)} examples after {step} steps ({seconds:.1f} s)",
                )
    return ModelCheck(
        name,
        "overfit",
        "fail",
        float(steps),
        f"{acc:.0%} of {len(y)} examples after {steps} steps (Adam lr {OVERFIT_LR})",
    )


__all__ = ["ModelCheck", "check_model"]
