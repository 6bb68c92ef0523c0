"""Datasets: a registry of loaders that turn a DataConfig into tensors.

Every loader returns a ``DataBundle`` of whole tensors (train and test) that the
tensor-resident ``loader.TensorLoader`` slices into batches. Loaders are
listed by name in ``DATASETS`` and looked up by ``load_data``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nnlab.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from nnlab.config import DataConfig


@dataclass
class DataBundle:
    """Whole train/test tensors plus what a model builder needs to know about them."""

    x_train: torch.Tensor  # (N, *input_shape), float32 or uint8 images
    y_train: torch.Tensor  # (N,), int64 class indices
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]  # one example's shape, e.g. (2,), (3, 32, 32), (T, 1)
    class_names: list[str] = field(default_factory=list)
    # Per-channel (mean, std) for uint8 images, applied on the device by the loader.
    normalization: tuple[list[float], list[float]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # Datasets that draw fresh training examples (palindrome's stream variant) give a
    # builder ``(batch_size, seed, device) -> loader``; the loader has ``set_epoch``
    # and ``__len__`` like TensorLoader and draws batches from (seed, epoch) alone,
    # so runs stay reproducible. None: batches are sliced from x_train/y_train.
    train_loader: Callable[[int, int, torch.device], Any] | None = None
    # A stack of S runs' data (``nnlab.engine.run.stack_data``): tensors of shape (S, N, ...)
    # and (S, N), one slice per run, and those runs' seeds (each its own batch order).
    stack_seeds: list[int] = field(default_factory=list)


# The one table of datasets: name -> "module:loader". A loader is
# ``fn(cfg: DataConfig, seed: int) -> DataBundle``; its module is imported on first use,
# so `import nnlab` and config validation stay light. Add a dataset by adding a row.
DATASETS = {
    "moons": "nnlab.data.toy:load_toy",
    "circles": "nnlab.data.toy:load_toy",
    "blobs": "nnlab.data.toy:load_toy",
    "palindrome": "nnlab.data.palindrome:load_palindrome",
    "cifar10": "nnlab.data.cifar10:load_cifar10",
    "imagefolder": "nnlab.data.imagefolder:load_imagefolder",
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def load_data(cfg: DataConfig, seed: int) -> DataBundle:
    """Load the dataset named by ``cfg.name``; ``seed`` is used when ``cfg.seed`` is -1."""
    if cfg.name not in DATASETS:
        raise ConfigError(
            f"data.name: must be one of {', '.join(dataset_names())}, got {cfg.name!r}"
        )
    module, _, function = DATASETS[cfg.name].partition(":")
    loader = getattr(importlib.import_module(module), function)
    bundle = loader(cfg, seed if cfg.seed < 0 else cfg.seed)
    return _limit(bundle, cfg.limit_train, cfg.limit_test)


def _limit(b: DataBundle, limit_train: int, limit_test: int) -> DataBundle:
    if limit_train:
        b.x_train, b.y_train = b.x_train[:limit_train], b.y_train[:limit_train]
    if limit_test:
        b.x_test, b.y_test = b.x_test[:limit_test], b.y_test[:limit_test]
    return b
