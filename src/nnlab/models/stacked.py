"""Seeds stacked into one model: S plain MLPs of one shape trained as one network.

For a small MLP a training step costs about the same for one network as for
ten: the time goes to per-call overhead (Python, dispatch, tiny kernels), not to
arithmetic. ``StackedMLP`` holds the S networks' weights as tensors of shape
``(S, out, in)`` and ``(S, out)`` and runs them with batched matmuls, so the
engine's one ``fit`` trains all seeds of a sweep setting at once. Every
operation is independent across the stack, so member s computes exactly what a
lone run with its seed computes (its own initial weights, data, batch order);
``tests/test_golden.py`` and ``tests/test_numpy_mlp_run.py`` check it.
"""

from __future__ import annotations

import torch
from torch import nn

from nnlab.models.mlp import ACTIVATIONS, MLP


class StackedMLP(nn.Module):
    """``members`` lone ``MLP``s (Linear + activation only) as one module.

    ``forward``: ``(S, B, D) -> (S, B, C)``. ``member_state_dict(s)`` gives member
    s's weights under the lone MLP's keys, so its checkpoints load into a lone
    ``MLP`` like any other run's.
    """

    def __init__(self, members: list[MLP], activation: str) -> None:
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member")
        plain = (MLP, nn.Sequential, nn.Linear, ACTIVATIONS[activation])
        if any(type(m) not in plain for net in members for m in net.modules()):
            raise ValueError("only plain MLPs (Linear and activation layers) can be stacked")
        lone = members[0].state_dict()
        self.members = len(members)
        self.keys = list(lone)  # the lone MLP's state_dict keys: W0, b0, W1, b1, ... in order
        # one leaf per lone parameter, in the lone parameters' order: an optimizer over
        # these is S optimizers (every update is elementwise)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack(ps).detach().clone())
            for ps in zip(*(m.parameters() for m in members), strict=True)
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, B, D) -> (S, B, C)
        w = list(self.weights)
        for i in range(0, len(w), 2):
            x = torch.baddbmm(w[i + 1].unsqueeze(1), x, w[i].transpose(1, 2))
            x = self.act(x) if i + 2 < len(w) else x
        return x

    def member_state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Member ``s``'s weights as a lone ``MLP``'s state_dict (copies)."""
        return {k: p[s].detach().clone() for k, p in zip(self.keys, self.weights, strict=True)}
