"""Multi-layer perceptron: Linear -> [BatchNorm] -> activation -> [Dropout], repeated.

Returns logits: softmax belongs inside the loss (``cross_entropy`` applies
log-softmax itself), never before it, the course report's first defect.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from nnlab.config import ModelConfig


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


class MLP(nn.Module):
    """``n_inputs -> hidden[0] -> ... -> hidden[-1] -> n_classes``; inputs of any shape are flattened."""

    def __init__(
        self,
        n_inputs: int,
        hidden: list[int],
        n_classes: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # (B, *input_shape) -> (B, n_classes)
        # Flatten only when needed: for tiny 2-D inputs an extra module call per
        # step is a measurable share of the step.
        return self.net(x.flatten(1) if x.dim() > 2 else x)


def build_mlp(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> MLP:
    return MLP(
        math.prod(input_shape),
        list(cfg.hidden),
        n_classes,
        activation=cfg.activation,
        dropout=cfg.dropout,
        batchnorm=cfg.batchnorm,
    )
