"""Loaders for a run: splits moved to the device once, image transforms per batch."""

from __future__ import annotations

import torch

from nnlab.config import Config
from nnlab.data import DataBundle
from nnlab.data.loader import StackedLoader, TensorLoader
from nnlab.engine import distributed
from nnlab.engine.setup import speed_settings
from nnlab.errors import ConfigError

EVAL_BATCH = 2048  # evaluation has no gradients, so it can use larger batches


def image_transforms(
    cfg: Config, data: DataBundle, device: torch.device, channels_last: bool | None = None
):
    """``(train, test)`` batch transforms for uint8 images (augment + normalise on the device); None otherwise."""
    if data.x_train.dtype != torch.uint8:
        if cfg.data.augment:
            raise ConfigError(
                f"data.augment: only image datasets (cifar10, imagefolder) can be augmented, not {cfg.data.name}"
            )
        return None, None
    from nnlab.data.augment import ImageTransform

    mean, std = data.normalization if data.normalization is not None else (None, None)
    if channels_last is None:
        _, channels_last = speed_settings(cfg, device, data.input_shape)
    d = cfg.data
    common = {
        "padding": d.crop_padding,
        "cutout_size": d.cutout_size,
        "channels_last": channels_last,
    }
    return ImageTransform(mean, std, d.augment, **common), ImageTransform(mean, std, (), **common)


def smallest_batch(model: torch.nn.Module) -> int:
    """The fewest examples a training batch of ``model`` may hold: 2 with BatchNorm (which
    cannot normalise one example in training), else 1."""
    norms = torch.nn.modules.batchnorm._BatchNorm
    return 2 if any(isinstance(m, norms) for m in model.modules()) else 1


def check_batches(cfg: Config, data: DataBundle, model: torch.nn.Module) -> None:
    """Refuse, before a folder is written, a BatchNorm model trained on batches of one
    example (``train.batch_size``, a rank's share of it under torchrun) or on a single
    example: dropping a last batch of one (``make_loaders``) would leave nothing to train on."""
    smallest = smallest_batch(model)
    per_rank = cfg.train.batch_size // distributed.world_size()
    if per_rank < smallest:
        raise ConfigError(
            f"train.batch_size: BatchNorm needs batches of 2 or more examples in training, got "
            f"{cfg.train.batch_size}" + (" over the ranks" if distributed.world_size() > 1 else "")
        )
    n = len(data.y_train) if data.train_loader is None else smallest
    if n < smallest:
        d = cfg.data
        cause = f"data.limit_train={d.limit_train}" if d.limit_train else f"data.name={d.name}"
        raise ConfigError(
            f"model.batchnorm: BatchNorm needs batches of 2 or more examples in training, and "
            f"the training set holds {n} ({cause}); train on more examples"
        )


def make_loaders(
    cfg: Config, data: DataBundle, device: torch.device, plan=None, min_last: int = 1
) -> tuple[TensorLoader, TensorLoader]:
    """Move the splits to ``device`` once; batches are then views of them.

    Under torchrun each rank trains on its share of every global batch and scores
    its share of the test set (see ``nnlab.engine.distributed``). A stack of seeds
    (``data.stack_seeds``) gets ``StackedLoader``s: each member its own order. A last
    training batch smaller than ``min_last`` (``smallest_batch``) sits out each epoch.
    """
    if data.stack_seeds:
        b = cfg.train.batch_size
        x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
        train = StackedLoader(x_tr, y_tr, b, seeds=data.stack_seeds, shuffle=True)
        x_te, y_te = data.x_test.to(device), data.y_test.to(device)
        return train, StackedLoader(x_te, y_te, max(EVAL_BATCH, b), seeds=data.stack_seeds)
    if data.train_loader is not None and distributed.is_distributed():
        raise ConfigError(
            f"data.name: {cfg.data.name} draws its own batches, which torchrun ranks cannot share yet; train it in one process"
        )
    # uint8 images stay uint8 on the device; these convert, augment and normalise each batch.
    train_tf, test_tf = image_transforms(
        cfg, data, device, plan.channels_last if plan is not None else None
    )
    if data.train_loader is not None:  # the dataset draws its own batches (e.g. a stream)
        train = data.train_loader(cfg.train.batch_size, cfg.train.seed, device)
    else:
        train = TensorLoader(
            data.x_train.to(device),
            data.y_train.to(device),
            cfg.train.batch_size,
            shuffle=True,
            seed=cfg.train.seed,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
            transform=train_tf,
            min_last=min_last,
        )
    return train, _eval_loader(cfg, data.x_test, data.y_test, device, test_tf)


def make_val_loader(cfg: Config, data: DataBundle, device: torch.device, plan=None):
    """The validation split's loader (``data.val_fraction``), scored like the test set; None without one."""
    if data.x_val is None:
        return None
    if data.stack_seeds:
        b = max(EVAL_BATCH, cfg.train.batch_size)
        x, y = data.x_val.to(device), data.y_val.to(device)
        return StackedLoader(x, y, b, seeds=data.stack_seeds)
    _, test_tf = image_transforms(
        cfg, data, device, plan.channels_last if plan is not None else None
    )
    return _eval_loader(cfg, data.x_val, data.y_val, device, test_tf)


def _eval_loader(cfg: Config, x, y, device: torch.device, transform) -> TensorLoader:
    """In order, no augmentation; under torchrun each rank scores its share."""
    x, y = distributed.shard(x), distributed.shard(y)
    # Images: a conv net's float32 activations for 2048 images reach ~0.5 GB a layer; 512 keeps memory flat.
    eval_batch = EVAL_BATCH if transform is None else 512
    return TensorLoader(
        x.to(device), y.to(device), max(eval_batch, cfg.train.batch_size), transform=transform
    )
