"""Values at the edges of a key's range that only work out with other keys: seeds, splits, scales.

``config.check.validate`` checks each key alone (``train.seed >= 0``, ``0 < test_fraction < 1``);
``check_ranges`` (called from it) refuses what passes those checks and still fails later
inside NumPy, scikit-learn or torch, with one line naming the key:

- seeds: NumPy's legacy seeding and scikit-learn's ``random_state`` take 0..2^32-1 only, so
  ``train.seed`` and ``data.seed`` must fit there (``MAX_SEED``); ``seed_range`` checks the
  seeds a ``--seeds N`` sweep adds to a first seed;
- the toy sets' stratified train/test split: scikit-learn needs at least one test and one
  training example per class and at least two examples of every class (blobs spreads
  ``n_samples`` over ``centers``);
- noise scales so large that the standardisation overflows float64 (``MAX_SCALE``), gate
  biases past what a float32 weight holds (``MAX_GATE_BIAS``), a ``train.target_acc``
  that is no accuracy (below 0 it stops at once, above 1 never);
- ``data.augment`` on data that is not images (refused before a run folder exists);
- BatchNorm with batches of one example (``train.batch_size = 1``, ``data.limit_train = 1``).

The size of everything (memory) is ``config/limits.py``'s job. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nnlab.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy.random.seed and scikit-learn's random_state take 0..2^32-1
# data.noise and data.cluster_std: beyond this the classes drown in the noise anyway (the
# moons are 1 apart), and near 1e150 the standardisation's squares overflow float64.
MAX_SCALE = 1e6
# model.forget_bias, model.update_bias: sigmoid(100) is 1 to float32 precision; past
# float32's range (3e38) the bias cannot even be stored in the weights
MAX_GATE_BIAS = 100.0
TOY = ("moons", "circles", "blobs")
IMAGE_DATA = ("cifar10", "imagefolder")  # uint8 images: what data.augment transforms


def check_ranges(cfg: Any) -> None:
    """Refuse (ConfigError, one line naming the key) values that pass their own checks but
    fail in the libraries underneath."""
    _check_seeds(cfg)
    d = cfg.data
    for key in ("noise", "cluster_std"):
        value = getattr(d, key)
        if value > MAX_SCALE:
            raise ConfigError(
                f"data.{key}: must be <= {MAX_SCALE:g} (the classes are pure noise long before), got {value!r}"
            )
    target = cfg.train.target_acc
    if not 0 <= target <= 1:  # an accuracy: below 0 stops at once, above 1 never
        raise ConfigError(f"train.target_acc: must be in [0, 1] (0 = off), got {target!r}")
    for key in ("forget_bias", "update_bias"):
        value = getattr(cfg.model, key)
        if abs(value) > MAX_GATE_BIAS:
            raise ConfigError(
                f"model.{key}: must be in -{MAX_GATE_BIAS:g}..{MAX_GATE_BIAS:g} (a gate is "
                f"fully open or shut long before), got {value!r}"
            )
    if d.augment and d.name not in IMAGE_DATA:  # checked here, before a run folder exists
        raise ConfigError(
            f"data.augment: only image datasets ({', '.join(IMAGE_DATA)}) can be augmented, "
            f"not {d.name}; set data.augment=[]"
        )
    if d.name in TOY:
        _check_toy_split(d)
    _check_batchnorm(cfg)


def has_batchnorm(m: Any) -> bool:
    """Whether nnlab's model for the ``[model]`` section ``m`` has BatchNorm layers (a user's
    model is checked when built: ``engine.loaders.check_batches``)."""
    return m.backend == "torch" and (
        m.name == "cnn-fast" or (m.batchnorm and m.name in ("mlp", "cnn"))
    )


def _check_batchnorm(cfg: Any) -> None:
    """BatchNorm cannot normalise a batch of one example in training. A last batch of one is
    left out of each epoch (``data.loader.TensorLoader``'s ``min_last``); batches that are all
    of one, or a training set of one, are refused."""
    if not has_batchnorm(cfg.model):
        return
    if cfg.train.batch_size < 2:
        raise ConfigError(
            f"train.batch_size: BatchNorm (model.name={cfg.model.name}) needs batches of 2 or "
            f"more examples in training, got {cfg.train.batch_size}"
        )
    if cfg.data.limit_train == 1:
        raise ConfigError(
            "data.limit_train: BatchNorm needs batches of 2 or more examples in training; "
            "a training set of 1 gives none"
        )


def _check_seeds(cfg: Any) -> None:
    seed = cfg.train.seed
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"train.seed: must be in 0..{MAX_SEED} (what NumPy and scikit-learn accept), got {seed}"
        )
    data_seed = cfg.data.seed
    if not (data_seed == -1 or 0 <= data_seed <= MAX_SEED):
        raise ConfigError(
            f"data.seed: must be -1 (follow train.seed) or in 0..{MAX_SEED}, got {data_seed}"
        )


def seed_range(first: int, count: int) -> None:
    """Refuse ``count`` seeds from ``first`` on (``--seeds N``) that pass ``MAX_SEED``."""
    last = first + count - 1
    if last > MAX_SEED:
        raise ConfigError(
            f"seeds: {count} seeds from {first} end at {last}, past the largest seed {MAX_SEED}; "
            f"start at --seed {max(0, MAX_SEED - count + 1)} or lower"
        )


def seed_list(seeds: int | Sequence[int], first: int) -> Sequence[int]:
    """The API's ``seeds=``: a count from ``first`` on (a ``range``, counted before any seed is
    used), or a list of seeds; refused in one line past what NumPy and scikit-learn take."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds: must be >= 1, got {seeds}")
        seed_range(first, seeds)
        return range(first, first + seeds)
    listed = list(seeds)
    if not listed or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in listed
    ):
        raise ConfigError(
            f"seeds: expected a count >= 1 or a list of seeds in 0..{MAX_SEED}, got {seeds!r}"
        )
    return listed


def grid_seeds(values: Sequence[int]) -> Sequence[int]:
    """``--grid train.seed=0,5,9`` (typed) or ``=0..9`` (a range, kept a range) as the seed list."""
    if isinstance(values, range):
        if values and not (values[0] >= 0 and values[-1] <= MAX_SEED):
            raise ConfigError(
                f"grid 'train.seed': seeds must be in 0..{MAX_SEED}, got {values[0]}..{values[-1]}"
            )
        return values
    seeds = seed_list(values, 0)
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"grid 'train.seed': a seed is given twice in {list(values)}")
    return seeds


def toy_class_sizes(d: Any) -> list[int]:
    """How many points of each class scikit-learn's generator draws for ``d.n_samples``."""
    n = d.n_samples
    if d.name == "blobs":  # make_blobs: n // centers each, the remainder one each to the first
        return [n // d.centers + (1 if i < n % d.centers else 0) for i in range(d.centers)]
    return [n // 2, n - n // 2]  # make_moons, make_circles: the outer half, the inner half


def _check_toy_split(d: Any) -> None:
    """What scikit-learn's stratified ``train_test_split`` needs (``nnlab.data.toy``)."""
    sizes = toy_class_sizes(d)
    classes, n = len(sizes), d.n_samples
    if min(sizes) < 2:
        key = "data.centers" if d.name == "blobs" else "data.n_samples"
        raise ConfigError(
            f"{key}: {n} points over {classes} classes leave {min(sizes)} in some class; the "
            f"stratified train/test split needs 2 or more per class (data.n_samples >= {2 * classes})"
        )
    n_test = math.ceil(d.test_fraction * n)  # scikit-learn's rounding of a float test_size
    n_train = n - n_test
    if n_test < classes:
        raise ConfigError(
            f"data.test_fraction: {d.test_fraction!r} of {n} points leaves {n_test} for testing, "
            f"fewer than the {classes} classes; the stratified split needs a test point per class "
            f"(data.test_fraction >= {classes / n:.3g})"
        )
    if n_train < classes:
        raise ConfigError(
            f"data.test_fraction: {d.test_fraction!r} of {n} points leaves {n_train} for training, "
            f"fewer than the {classes} classes; the stratified split needs a training point per "
            f"class (data.test_fraction <= {1 - classes / n:.3g})"
        )
