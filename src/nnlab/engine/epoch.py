"""One epoch of training: ``train_one_epoch`` runs a step over every batch of a loader,
keeping the epoch's training metrics in a ``Tally`` (on the device)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Tally:
    """An epoch in progress: batches done and the running sums of its training metrics (on
    the device); a mid-epoch checkpoint saves it, so the resumed epoch's means are exact."""

    batches: int = 0
    seen: int = 0
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "seen": self.seen,
            "loss_sum": self.loss_sum,
            "correct": self.correct,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Tally:
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return cls(state["batches"], state["seen"], move(state["loss_sum"]), move(state["correct"]))


def train_one_epoch(
    step,
    loader,
    *,
    scheduler=None,
    track: bool = True,
    ema=None,
    tally: Tally | None = None,
    on_step=None,
) -> dict[str, Any]:
    """One pass over ``loader`` with ``step`` (``engine/steps.py``); with ``track``, the
    epoch's mean train loss and accuracy (floats; lists of one per member for a stack).

    Metrics accumulate on the device and are read once at the end: a ``.item()``
    per step would wait for the device at every step. ``tally`` continues an epoch
    resumed mid-way; ``on_step(tally)`` runs after every step (progress, checkpoints).
    """
    step.train_model.train()
    tally = tally if tally is not None else Tally()
    # one autograd switch for the epoch, not one per step (the hand-derived step needs no graph)
    with torch.set_grad_enabled(step.needs_grad):
        for x, y in loader:
            loss, logits = step(x, y, track)
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update()
            if track:
                n = y.shape[-1]  # examples per member
                with torch.no_grad():
                    batch_loss = loss.detach() * n
                    batch_correct = (logits.argmax(-1) == y).sum(-1)
                    tally.loss_sum = (
                        batch_loss if tally.loss_sum is None else tally.loss_sum + batch_loss
                    )
                    tally.correct = (
                        batch_correct if tally.correct is None else tally.correct + batch_correct
                    )
                tally.seen += n
            tally.batches += 1
            if on_step is not None:
                on_step(tally)
    if not track or tally.seen == 0:
        return {}
    return {
        "train_loss": ratio(tally.loss_sum, tally.seen),
        "train_acc": ratio(tally.correct, tally.seen),
    }


def ratio(total: torch.Tensor, count: int):
    """``total / count`` in Python floats: one value, or one per member of a stack."""
    values = total.tolist()
    return values / count if not isinstance(values, list) else [v / count for v in values]
