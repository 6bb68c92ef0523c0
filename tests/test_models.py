"""Every registered model: right output shape, finite loss, a gradient for every parameter.

Parametrized over the registry, so a newly registered model is tested at once.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.models import build_model, model_names
from nnlab.models.mlp import MLP

# A small input each model family accepts: (input_shape, overrides).
EXAMPLE_INPUTS = {
    "mlp": ((2,), []),
    "rnn": ((6, 1), ["model.hidden=16"]),  # (T, features): palindrome digits as scalars
    "lstm": ((6, 10), ["model.hidden=16", "model.impl=fused"]),
    "gru": ((6, 10), ["model.hidden=16"]),
    "cnn": (
        (3, 16, 16),
        ["model.widths=8,M,R8,GM,F16", "model.batchnorm=true", "model.dropout=0.1"],
    ),
    "cnn-fast": ((3, 16, 16), ["model.widths=8,16", "model.activation=gelu"]),
}


@pytest.mark.parametrize("name", model_names())
def test_every_model_smoke(name):
    assert name in EXAMPLE_INPUTS, f"add an example input for model '{name}' to EXAMPLE_INPUTS"
    shape, overrides = EXAMPLE_INPUTS[name]
    cfg = load_config("moons", [f"model.name={name}", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, shape, 10)
    x = torch.randn(4, *shape)
    logits = model(x)
    assert logits.shape == (4, 10)
    loss = F.cross_entropy(logits, torch.arange(4))
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_unknown_model_lists_known():
    cfg = load_config("moons").model
    cfg.name = "resnet"
    with pytest.raises(ConfigError, match="mlp"):
        build_model(cfg, (2,), 2)


def test_mlp_returns_logits_not_probabilities():
    torch.manual_seed(0)
    model = MLP(2, [20], 2, activation="sigmoid")
    out = model(torch.randn(64, 2) * 5)
    # softmax output would sum to 1 per row; logits do not
    assert not torch.allclose(out.sum(1), torch.ones(64))
    assert sum(p.numel() for p in model.parameters()) == 2 * 20 + 20 + 20 * 2 + 2


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu"])
def test_mlp_options(activation):
    model = MLP(12, [8, 4], 3, activation=activation, dropout=0.1, batchnorm=True)
    assert model(torch.randn(5, 3, 4)).shape == (5, 3)  # inputs of any shape are flattened
