"""What a run's checkpoint holds, and putting a run back as a checkpoint left it.

A checkpoint describes itself: model weights (the evaluated ones: the average
with ``train.ema``), optimizer, scheduler, the ``FitState`` counters, RNG states
and, mid-epoch, the loader's position and the epoch's running sums. The sink
adds the config. Every entry loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

import torch

from nnlab.engine import distributed
from nnlab.engine.epoch import Tally
from nnlab.engine.fit_state import FitState


class Saver:
    """Checkpoints of the run in progress, built when the sink asks: ``saver(member)`` at an
    evaluation or the end, ``saver(0, tally)`` mid-epoch (with the loader's position)."""

    def __init__(self, model, eval_model, optimizer, scheduler, state: FitState, ema, loader):
        self.parts = (model, eval_model, optimizer, scheduler, state, ema)
        self.state, self.loader = state, loader

    def __call__(self, member: int, tally: Tally | None = None) -> dict[str, Any]:
        ck = _checkpoint(*self.parts, member)
        if tally is not None:  # mid-epoch: where the epoch is, to go on from this very step
            generator = getattr(self.loader, "generator", None)
            ck["position"] = {
                "epoch": self.state.epoch + 1,
                "generator": generator.get_state() if generator is not None else None,
                **tally.state_dict(),
            }
        return ck

    def can_resume_mid_epoch(self, plan, every_s: float) -> bool:
        """A loader that can start mid-way, one process (the ranks of torchrun would each
        decide by their own clock), a lone run (stacks are written at the end)."""
        lone = plan.members == 1 and not distributed.is_distributed()
        return every_s > 0 and lone and hasattr(self.loader, "resume_at")

    def start_epoch(self, epoch: int, position: dict | None, device) -> Tally | None:
        """Set the loader on ``epoch``; a resumed run's epoch starts where it was cut."""
        self.loader.set_epoch(epoch)
        if position is None or position["epoch"] != epoch:
            return None
        self.loader.resume_at(position["batches"], position["generator"])
        return Tally.from_state(position, device)


def load_resume(resume: dict, model, optimizer, scheduler, state: FitState, device) -> None:
    """Model, optimizer, scheduler, counters and RNG state as the checkpoint left them."""
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(resume["scheduler"])
    state.load_state_dict(resume)
    torch.set_rng_state(resume["torch_rng"])
    if resume.get("cuda_rng") is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(resume["cuda_rng"])


def _checkpoint(model, eval_model, optimizer, scheduler, state: FitState, ema, member: int) -> dict:
    """Member ``member``'s checkpoint (the sink adds the config); loads with ``weights_only=True``."""
    stacked = hasattr(model, "member_state_dict")
    optim_state = optimizer.state_dict()
    return {
        "model": model.member_state_dict(member) if stacked else eval_model.state_dict(),
        "optimizer": _member_slice(optim_state, member, state.members) if stacked else optim_state,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        **state.state_dict(member),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **({"ema": ema.state_dict(model)} if ema is not None else {}),
    }


def _member_slice(optim_state: dict, s: int, members: int) -> dict:
    """Member ``s``'s share of an optimizer state_dict (buffers of shape (S, ...); scalars kept)."""

    def pick(v):
        stacked = isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == members
        return v[s].clone() if stacked else v

    return {
        "state": {i: {k: pick(v) for k, v in st.items()} for i, st in optim_state["state"].items()},
        "param_groups": optim_state["param_groups"],
    }
