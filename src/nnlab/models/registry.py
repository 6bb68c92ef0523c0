"""A small model registry: ``@register_model("mlp")`` and ``create_model``.

A registered builder is the one boundary between configs and models: it takes
the ``[model]`` section and the data's shape and calls the model's constructor
with explicit keyword arguments, so models never see configs or the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nnlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from nnlab.config import ModelConfig

Builder = Callable[["ModelConfig", tuple[int, ...], int], "nn.Module"]
_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' registered twice")
        _BUILDERS[name] = fn
        return fn

    return wrap


def registered_models() -> list[str]:
    return sorted(_BUILDERS)


def create_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Build ``cfg.name`` for inputs of ``input_shape`` (one example) and ``n_classes`` outputs."""
    if cfg.name not in _BUILDERS:
        raise ConfigError(
            f"model.name: must be one of {', '.join(registered_models())}, got {cfg.name!r}"
        )
    return _BUILDERS[cfg.name](cfg, input_shape, n_classes)
