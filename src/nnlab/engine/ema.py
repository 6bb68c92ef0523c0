"""A moving average of a model's weights (``train.ema``), optionally as Lookahead (``train.lookahead``).

Late in training SGD's weights jitter around a minimum; their exponential
moving average sits nearer its centre and usually scores a little better, at
no cost in steps. With ``lookahead`` the training weights are also pulled back
to the average at every update (Zhang et al. 2019, "Lookahead optimizer: k
steps forward, 1 step back"; the CIFAR-10 speed records use it this way), so
the average steers training instead of only watching it.

``fit`` keeps one ``WeightAverage`` beside the model: it evaluates and saves
the *average* (checkpoint entry ``model``, so ``best.pt`` and
``final_test_acc`` describe the same weights), and saves the training weights
and counters under ``ema`` so a resumed run continues bit for bit.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """EMA of every float parameter and buffer of ``model``; ``update`` after each optimizer step.

    Each ``every``-th call blends ``avg <- d * avg + (1 - d) * weights`` with
    ``d = decay * (step / total_steps) ** 3``. The cubic ramp (as in the CIFAR-10
    speed records) keeps the average close to the current weights while they
    still move fast (``d < decay / 8`` in the first half of training), and brings
    it to full strength only near the end, where averaging helps; a Lookahead
    at full strength from the start would slow early progress several-fold.
    Integer buffers (BatchNorm's batch counter) are copied.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float,
        every: int = 1,
        lookahead: bool = False,
        total_steps: int = 1,
    ) -> None:
        self.decay, self.every, self.lookahead = decay, every, lookahead
        self.total_steps = max(total_steps, 1)
        # the averaged weights: evaluate this one
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.steps = self.updates = 0
        # Tensors (parameters and buffers, in state_dict order) that share storage with each model.
        live, avg = model.state_dict().values(), self.model.state_dict().values()
        pairs = list(zip(avg, live, strict=True))
        self._float = [(a, w) for a, w in pairs if a.is_floating_point()]
        self._other = [(a, w) for a, w in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Count one optimizer step; every ``every`` steps blend the training weights into the average."""
        self.steps += 1
        if self.steps % self.every:
            return
        self.updates += 1
        d = self.decay * min(self.steps / self.total_steps, 1.0) ** 3
        avg = [a for a, _ in self._float]
        live = [w for _, w in self._float]
        # avg += (1 - d) * (live - avg), one fused kernel per dtype/device
        torch._foreach_lerp_(avg, live, 1.0 - d)
        for a, w in self._other:
            a.copy_(w)
        if self.lookahead:  # one step back: the training weights restart from the average
            torch._foreach_copy_(live, avg)

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint needs beside the average itself: the training weights and the counters."""
        return {"train_model": model.state_dict(), "steps": self.steps, "updates": self.updates}

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Restore the training weights into ``model`` (the average was loaded into it and copied here)."""
        model.load_state_dict(state["train_model"])
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
