"""Training steps: what ``train_one_epoch`` does with one batch, chosen once per run.

A step is a callable ``step(x, y, track) -> (loss, logits)``: forward, backward and
optimizer update on the batch ``(x, y)``. ``loss`` is the batch's mean loss (a
0-dim tensor; for a stack of seeds, one per member, shape ``(S,)``), or None when
``track`` is false and the step needs no loss value. ``needs_grad`` says whether
the epoch runs under autograd.

- ``AutogradStep``: the ordinary step, for every model (also under DDP and compile).
- ``StackStep``: the same for a ``StackedMLP``: the sum over members of each one's
  mean loss, so each member's gradient is the one its lone run computes.
- ``nnlab.engine.manual_step.ManualMLPStep``: hand-derived gradients for small MLPs.

``engine/plan.py`` decides which one a run gets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def forward_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, mean cross-entropy)``; no autocast context at all unless ``amp`` (it costs per call)."""
    if amp:  # bf16 has float32's range: no loss scaling needed
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            logits = model(x)  # (B, n_classes)
            return logits, F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    logits = model(x)
    return logits, F.cross_entropy(logits, y, label_smoothing=label_smoothing)


class AutogradStep:
    """Forward, ``backward``, optional gradient clipping, ``optimizer.step()``.

    ``train_model`` is what runs the forward pass (the model, or its DDP or
    compiled wrapper); ``model`` owns the parameters that are clipped.
    """

    needs_grad = True

    def __init__(
        self,
        model: nn.Module,
        train_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        amp: bool = False,
        label_smoothing: float = 0.0,
        clip_norm: float = 0.0,
    ) -> None:
        self.model, self.train_model, self.optimizer = model, train_model, optimizer
        self.amp, self.label_smoothing, self.clip_norm = amp, label_smoothing, clip_norm
        # Gradients are cleared by setting .grad = None directly: what zero_grad(set_to_none=True)
        # does, without its profiler bookkeeping, which costs more than a small model's update.
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, track: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, loss = forward_loss(self.train_model, x, y, self.amp, self.label_smoothing)
        for p in self.params:
            p.grad = None
        loss.backward()
        if self.clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        return loss, logits


class StackStep(AutogradStep):
    """The step of a ``StackedMLP``: batches ``(S, B, ...)``, ``(S, B)``; losses ``(S,)``.

    The loss that is differentiated is the sum over members of each one's mean
    loss: every batch has B examples per member, so that is the sum over all S*B
    examples divided by B (one op fewer than S means). Member s's gradient is then
    exactly its lone run's. (No clipping: a global norm would mix the members;
    the plan refuses it.)
    """

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, track: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        logits = self.train_model(x)  # (S, B, C)
        flat_logits, flat_y = logits.flatten(0, 1), y.flatten()
        loss = F.cross_entropy(
            flat_logits, flat_y, reduction="sum", label_smoothing=self.label_smoothing
        )
        for p in self.params:
            p.grad = None
        (loss / y.shape[1]).backward()
        self.optimizer.step()
        if not track:
            return None, logits
        with torch.no_grad():  # each member's mean loss, (S,)
            each = F.cross_entropy(
                flat_logits, flat_y, reduction="none", label_smoothing=self.label_smoothing
            )
            return each.view(y.shape).mean(1), logits
