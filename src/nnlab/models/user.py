"""A user's own model: ``model.name = "path/file.py:Class"`` (or ``"package.module:Class"``).

The class is a ``torch.nn.Module`` whose ``forward`` returns logits ``(B, n_classes)``.
It is built with the keys of ``[model.kwargs]`` as keyword arguments, plus those of
``input_shape`` (one example's shape, a tuple), ``n_inputs`` (their product) and
``n_classes`` that its constructor names. Before training, one forward pass on a
batch of two zero inputs checks that it returns logits of the right shape, so a
wrong model is one line naming it, not a shape error deep inside the loss.

The engine checks the file against the sha256 the config recorded before building
(``nnlab.config.user_code.check_user_code``); this module only imports and builds.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnlab.errors import ConfigError
from nnlab.models.user_code import import_user_code, raised, split_target, user_class

if TYPE_CHECKING:
    from nnlab.config.sections import ModelConfig

# Constructor arguments that come from the data, never from model.kwargs.
DATA_ARGUMENTS = ("input_shape", "n_inputs", "n_classes")


def load_model_class(name: str, key: str = "model.name") -> type[nn.Module]:
    """The ``nn.Module`` subclass ``name`` (``FILE.py:Class`` or ``package.module:Class``) names."""
    target, cls_name = split_target(name)
    module = import_user_code(target, key)
    cls = user_class(module, cls_name, key, target)
    if not issubclass(cls, nn.Module):
        hint = (
            " (a NumPy network goes in model.modules with model.backend = numpy)"
            if hasattr(cls, "backward")
            else ""
        )
        raise ConfigError(f"{key}: {name} is not a torch.nn.Module{hint}")
    return cls


def constructor_arguments(
    cls: type, kwargs: dict[str, Any], input_shape: tuple[int, ...], n_classes: int
) -> dict[str, Any]:
    """``kwargs`` plus the data's arguments the constructor names (``DATA_ARGUMENTS``)."""
    data = {
        "input_shape": tuple(input_shape),
        "n_inputs": math.prod(input_shape),
        "n_classes": n_classes,
    }
    try:
        names = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        names = {}
    return {**kwargs, **{k: v for k, v in data.items() if k in names}}


def construct_model(
    cls: type[nn.Module],
    kwargs: dict[str, Any],
    input_shape: tuple[int, ...],
    n_classes: int,
    key: str = "model.name",
) -> nn.Module:
    """``cls(**kwargs, input_shape=..., n_classes=...)``; a constructor that does not take
    those arguments, or raises, is a one-line ConfigError."""
    where = f"{cls.__name__} ({_file_of(cls)})"
    arguments = constructor_arguments(cls, kwargs, input_shape, n_classes)
    try:
        inspect.signature(cls).bind(**arguments)
    except TypeError as exc:
        given = ", ".join(arguments) or "no arguments"
        raise ConfigError(
            f"model.kwargs: {where} cannot be called with {given}: {exc} "
            "(its constructor's arguments come from [model.kwargs], plus input_shape, n_inputs "
            "and n_classes when it names them)"
        ) from None
    except ValueError:
        pass  # no signature to check (a C type): the call below says what is wrong
    try:
        model = cls(**arguments)
    except Exception as exc:
        raise ConfigError(f"{key}: constructing {where} {raised(exc, _path_of(cls))}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{key}: {where} built a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_logits(
    model: nn.Module, input_shape: tuple[int, ...], n_classes: int, key: str = "model.name"
) -> None:
    """One forward pass on two zero inputs, in eval mode (no batch statistics move): the output
    must be logits ``(2, n_classes)``; anything else is a one-line ConfigError."""
    where = f"{type(model).__name__} ({_file_of(type(model))})"
    shape = (2, *input_shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape, device=device))
    except Exception as exc:
        raise ConfigError(
            f"{key}: {where}: forward on a batch of shape {shape} {raised(exc, _path_of(type(model)))}"
        ) from None
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"{key}: {where} returns a {type(out).__name__}; it must return the logits, "
            f"a tensor of shape (batch, {n_classes})"
        )
    if tuple(out.shape) != (2, n_classes):
        raise ConfigError(
            f"{key}: {where} returns shape {tuple(out.shape)} for 2 inputs of shape "
            f"{tuple(input_shape)}; expected logits of shape (2, {n_classes}) (batch, n_classes)"
        )
    if not out.is_floating_point():
        raise ConfigError(f"{key}: {where} returns {out.dtype} values; logits are floating point")


def build_user_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The registry's builder for ``FILE.py:Class`` names: import, construct, check the logits."""
    cls = load_model_class(cfg.name)
    model = construct_model(cls, dict(cfg.kwargs), input_shape, n_classes)
    check_logits(model, input_shape, n_classes)
    return model


def _path_of(cls: type) -> Path | None:
    try:
        return Path(inspect.getfile(cls))
    except (TypeError, OSError):
        return None


def _file_of(cls: type) -> str:
    path = _path_of(cls)
    return path.name if path is not None else cls.__module__


__all__ = [
    "DATA_ARGUMENTS",
    "build_user_model",
    "check_logits",
    "constructor_arguments",
    "construct_model",
    "load_model_class",
]
