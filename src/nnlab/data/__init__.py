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

    from nnlab.config.sections import DataConfig


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
    # data.val_fraction: a part of the training set held out for model selection (else None)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
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
    from nnlab.config.limits import check_data_fits

    check_data_fits(cfg)  # a dataset that cannot fit in memory: one line before it is built
    module, _, function = DATASETS[cfg.name].partition(":")
    loader = getattr(importlib.import_module(module), function)
    data_seed = seed if cfg.seed < 0 else cfg.seed
    bundle = _limit(loader(cfg, data_seed), cfg.limit_train, cfg.limit_test)
    if not cfg.val_fraction or bundle.x_val is not None:  # a stream draws its own
        return bundle
    return hold_out(bundle, cfg.val_fraction, data_seed)


def hold_out(b: DataBundle, fraction: float, seed: int) -> DataBundle:
    """Move a random ``fraction`` of the training set into ``x_val``/``y_val``.

    The split is drawn from its own generator (a function of the data seed), so it
    changes no random stream a run uses; the examples left for training keep their order.
    """
    import torch

    n = len(b.y_train)
    k = max(1, round(n * fraction))
    if k >= n:
        raise ConfigError(
            f"data.val_fraction: {fraction} of {n} training examples leaves none to train on"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + 104729))
    val, train = order[:k].sort().values, order[k:].sort().values
    b.x_val, b.y_val = b.x_train[val], b.y_train[val]
    b.x_train, b.y_train = b.x_train[train], b.y_train[train]
    return b


def _limit(b: DataBundle, limit_train: int, limit_test: int) -> DataBundle:
    if limit_train:
        b.x_train, b.y_train = b.x_train[:limit_train], b.y_train[:limit_train]
    if limit_test:
        b.x_test, b.y_test = b.x_test[:limit_test], b.y_test[:limit_test]
    return b
