"""The model registry: one table of model names and the builders that make them.

A builder is the one boundary between configs and models: it takes the ``[model]``
section and the data's shape and calls the model's constructor with plain keyword
arguments, so models never see configs or the CLI. Builders are named as
``"module:function"`` and imported on first use: config validation reads the
names without importing torch, and ``create_model`` works whatever was imported
before. Add a model by adding a row (and a test in tests/test_models.py runs it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from nnlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from nnlab.config.sections import ModelConfig

MODELS = {
    "mlp": "nnlab.models.mlp:build_mlp",
    "cnn": "nnlab.models.cnn:build_cnn",
    "cnn-fast": "nnlab.models.fast_cnn:build_fast_cnn",
    "rnn": "nnlab.models.rnn:build_rnn",
    "lstm": "nnlab.models.rnn:build_lstm",
    "gru": "nnlab.models.rnn:build_gru",
}


def model_names() -> list[str]:
    return sorted(MODELS)


def create_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Build ``cfg.name`` for inputs of ``input_shape`` (one example) and ``n_classes`` outputs.

    A name ``FILE.py:Class`` (or ``package.module:Class``) is the user's own model
    (``models/user.py``), built with ``cfg.kwargs``."""
    if ":" in cfg.name:
        from nnlab.models.user import build_user_model

        return build_user_model(cfg, input_shape, n_classes)
    if cfg.name not in MODELS:
        raise ConfigError(
            f"model.name: must be one of {', '.join(model_names())}, got {cfg.name!r}"
        )
    module, _, function = MODELS[cfg.name].partition(":")
    return getattr(importlib.import_module(module), function)(cfg, input_shape, n_classes)
