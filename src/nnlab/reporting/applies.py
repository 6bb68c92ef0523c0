"""Which config keys matter for which model, data set, optimizer and schedule.

A resolved config holds every key of every section, most of them defaults that the
run never read: a CNN has ``model.hidden``, a moons run has ``data.length``. The
report lists (and compares with a preset) only the keys that apply to the run's
own families, per the tables below; a family not in a table (e.g. a user's
``file.py:Class`` model) shows every key of its section.
"""

from __future__ import annotations

from typing import Any

from nnlab.config.user_code import is_user_model

_SPLITS = ("seed", "limit_train", "limit_test", "val_fraction", "test_fraction")
_TOY = ("name", "n_samples", *_SPLITS)
_IMAGES = (
    "name",
    "limit_train",
    "limit_test",
    "val_fraction",
    "dir",
    "normalize",
    "augment",
    "crop_padding",
    "cutout_size",
)
_RECURRENT = ("name", "hidden", "impl", "init")

# section -> family (the section's ``name``) -> the keys that family reads.
APPLIES: dict[str, dict[str, tuple[str, ...]]] = {
    "data": {
        "moons": (*_TOY, "noise"),
        "circles": (*_TOY, "noise"),
        "blobs": (*_TOY, "centers", "cluster_std"),
        "cifar10": _IMAGES,
        "imagefolder": (*_IMAGES, "image_size"),
        "palindrome": (*_SPLITS, "name", "n_samples", "length", "one_hot", "variant", "epoch_size"),
    },
    "model": {
        "mlp": ("name", "backend", "hidden", "activation", "dropout", "batchnorm", "modules"),
        "cnn": ("name", "widths", "activation", "dropout", "batchnorm"),
        "cnn-fast": ("name", "widths", "activation"),
        "rnn": _RECURRENT,
        "lstm": (*_RECURRENT, "forget_bias", "chrono"),
        "gru": (*_RECURRENT, "update_bias", "chrono"),
    },
    "optim": {
        "sgd": ("name", "lr", "weight_decay", "momentum", "nesterov"),
        "adam": ("name", "lr", "weight_decay", "betas"),
        "adamw": ("name", "lr", "weight_decay", "betas"),
        "rmsprop": ("name", "lr", "weight_decay", "momentum", "alpha"),
    },
    "schedule": {
        "none": ("name",),
        "step": ("name", "step_size", "gamma"),
        "cosine": ("name", "min_lr"),
        "onecycle": ("name", "pct_start"),
        "triangle": ("name", "pct_start", "min_lr", "start_factor"),
    },
}


def applies(cfg: dict[str, dict[str, Any]], section: str, key: str) -> bool:
    """Does ``section.key`` matter for the run ``cfg`` (a resolved config as a dict) describes?"""
    families = APPLIES.get(section)
    if families is None:  # [train]: every key applies to every run
        return True
    name = str(cfg.get(section, {}).get("name", ""))
    if section == "model" and is_user_model(name):  # its class reads only kwargs (sha256: describe)
        return key in ("name", "kwargs")
    keys = families.get(name)
    return keys is None or key in keys
