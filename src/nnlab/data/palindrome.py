"""Palindromes of digits: remember the first digit for T steps, then say it.

A palindrome of ``L = T + 1`` digits reads the same both ways. The model sees
the first ``T`` digits and must predict the last one, which equals the first
input digit: the rest of the sequence is there to be forgotten. Only the first
``ceil(L / 2)`` digits are free, so there are ``10 ** ceil(L / 2)`` palindromes
(leading zeros allowed): 1000 at T = 5, about 10**51 at T = 100.

Two variants (``data.variant``):

* ``finite`` (the course's dataset): ``n_samples`` *distinct* palindromes drawn
  without replacement, split train/test by ``test_fraction`` with none in both.
* ``stream`` (the original practical's infinite dataset): a fixed seeded test
  set of ``n_samples * test_fraction`` palindromes, and fresh random training
  palindromes every batch (they may coincide with test ones when T is short).

``data.epoch_size`` fixes the training examples per epoch (the finite set is
repeated or sampled; the stream draws that many), so every length gets the
same number of steps an epoch.

Digits go in as one scalar each (``one_hot = false``, the course's encoding, the
raw value 0..9) or as 10-way one-hot vectors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from nnlab.config import DataConfig
from nnlab.data import DataBundle
from nnlab.data.loader import epoch_generator
from nnlab.errors import ConfigError

N_DIGITS = 10


def n_palindromes(length: int) -> int:
    """How many palindromes of ``length + 1`` digits exist (a Python int: no overflow)."""
    return N_DIGITS ** -(-(length + 1) // 2)


def count_text(length: int) -> str:
    """``n_palindromes`` as text: digits, or ``10^k`` past 30 digits (Python refuses to print
    ints of over 4,300 digits, and nobody reads 30)."""
    half = -(-(length + 1) // 2)
    return str(N_DIGITS**half) if half <= 30 else f"10^{half}"


def mirror(halves: np.ndarray, length: int) -> np.ndarray:
    """Free digits ``(N, ceil((T+1)/2))`` -> full palindromes ``(N, T+1)``, uint8."""
    full_len = length + 1
    return np.concatenate([halves, halves[:, : full_len // 2][:, ::-1]], axis=1)


def draw_distinct(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct palindromes ``(n, T+1)`` (uint8 digits) in a random order, without replacement.

    Up to 10**18 palindromes (T <= 35): choose integers without replacement and
    spell them in base 10. More: the count no longer fits 64 bits, so draw digit
    strings, drop repeats (keeping first occurrences, so the order stays random
    and seeded) and top up; among >= 10**19 palindromes repeats are vanishingly
    rare, and no integer wider than a digit is needed (T = 100: 10**51 is fine).
    """
    total = n_palindromes(length)
    half = -(-(length + 1) // 2)
    if n > total:
        raise ValueError(f"asked for {n} distinct palindromes, only {total} exist")
    if total <= 10**18:
        ints = rng.choice(total, size=n, replace=False)
        powers = N_DIGITS ** np.arange(half - 1, -1, -1)
        halves = (ints[:, None] // powers) % N_DIGITS
        return mirror(halves.astype(np.uint8), length)
    halves = np.empty((0, half), dtype=np.uint8)
    while len(halves) < n:
        more = rng.integers(0, N_DIGITS, size=(n - len(halves) + 16, half), dtype=np.uint8)
        halves = np.concatenate([halves, more])
        _, first = np.unique(halves, axis=0, return_index=True)
        halves = halves[np.sort(first)]
    return mirror(halves[:n], length)


def draw_random(n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random palindromes ``(n, T+1)`` (int64 digits), repeats allowed, from ``generator``."""
    half = -(-(length + 1) // 2)
    halves = torch.randint(0, N_DIGITS, (n, half), generator=generator)
    return torch.cat([halves, halves[:, : (length + 1) // 2].flip(1)], dim=1)


def encode(palindromes: torch.Tensor, one_hot: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Full palindromes ``(N, T+1)`` -> inputs ``(N, T, 1)`` or ``(N, T, 10)`` float32, targets ``(N,)`` int64."""
    digits = palindromes.long()
    x, y = digits[:, :-1], digits[:, -1]
    if one_hot:
        return torch.nn.functional.one_hot(x, N_DIGITS).float(), y
    return x.float().unsqueeze(-1), y


class StreamLoader:
    """Fresh random palindromes every batch, ``n_batches`` per epoch, drawn from (seed, epoch) alone."""

    def __init__(
        self,
        length: int,
        one_hot: bool,
        n_per_epoch: int,
        batch_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        self.length, self.one_hot = length, one_hot
        self.n_per_epoch, self.batch_size = n_per_epoch, batch_size
        self.seed, self.device = seed, device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n_per_epoch // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # One draw per epoch (vectorised), then batch views: every batch is new data.
        # The +1 keeps the training stream apart from the test set's draw (seed itself).
        g = epoch_generator(self.seed + 1, self.epoch)
        x, y = encode(draw_random(self.n_per_epoch, self.length, g), self.one_hot)
        x, y = x.to(self.device), y.to(self.device)
        yield from zip(x.split(self.batch_size), y.split(self.batch_size), strict=True)


class RepeatLoader:
    """``epoch_size`` examples an epoch from a finite training set: whole shuffled passes
    back to back, cut at ``epoch_size`` (a smaller set repeats, a larger one is sampled).

    At T = 3 only 100 palindromes exist: one pass is a single batch, so a fixed
    number of epochs would give short lengths far fewer steps than long ones.
    ``data.epoch_size`` makes an epoch the same number of steps at every length.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, epoch_size: int, batch_size: int, seed: int
    ) -> None:
        # Private names: nnlab.engine.compile treats loaders with a resident ``x`` as TensorLoaders.
        self._x, self._y = x, y
        self.epoch_size, self.batch_size, self.seed = epoch_size, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.epoch_size // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = epoch_generator(self.seed, self.epoch)
        n = len(self._x)
        # Whole permutations back to back: every example once before any twice.
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-self.epoch_size // n))])
        order = order[: self.epoch_size].to(self._x.device)
        yield from zip(
            self._x[order].split(self.batch_size),
            self._y[order].split(self.batch_size),
            strict=True,
        )


def load_palindrome(cfg: DataConfig, seed: int) -> DataBundle:
    """The finite or stream palindrome dataset for ``cfg.length`` input digits."""
    if cfg.length < 1:
        raise ConfigError(f"data.length: must be >= 1, got {cfg.length}")
    if not isinstance(cfg.one_hot, bool):
        raise ConfigError(f"data.one_hot: expected true or false, got {cfg.one_hot!r}")
    if cfg.variant not in ("finite", "stream"):
        raise ConfigError(f"data.variant: must be one of finite, stream, got {cfg.variant!r}")
    total = n_palindromes(cfg.length)
    rng = np.random.default_rng(seed)
    shape = (cfg.length, N_DIGITS if cfg.one_hot else 1)
    common = dict(
        n_classes=N_DIGITS, input_shape=shape, class_names=[str(d) for d in range(N_DIGITS)]
    )
    if cfg.variant == "finite":
        n = cfg.n_samples
        # n_samples is capped at the palindromes that exist (its documented meaning, and
        # what lets one preset serve every length); the run records n_train and n_test.
        n = min(n, total)
        n_test = max(1, round(n * cfg.test_fraction))
        if n - n_test < 1:
            raise ConfigError(
                f"data.n_samples: {n} palindromes leave none for training; raise n_samples or lower test_fraction"
            )
        x, y = encode(torch.from_numpy(draw_distinct(n, cfg.length, rng)), cfg.one_hot)
        info = {"variant": "finite", "n_palindromes": count_text(cfg.length)}
        bundle = DataBundle(x[n_test:], y[n_test:], x[:n_test], y[:n_test], **common, info=info)
        if cfg.epoch_size:
            # Reads the bundle when training starts, so data.limit_train applies first.
            def repeat(batch_size: int, train_seed: int, device: torch.device) -> RepeatLoader:
                xs, ys = bundle.x_train.to(device), bundle.y_train.to(device)
                return RepeatLoader(xs, ys, cfg.epoch_size, batch_size, train_seed)

            bundle.train_loader = repeat
        return bundle

    # stream: a fixed test set of n_samples * test_fraction distinct palindromes (capped
    # like the finite set); epoch_size (or the rest of n_samples) fresh ones each epoch.
    n_test = max(1, round(cfg.n_samples * cfg.test_fraction))
    n_test = min(n_test, total)
    n_train = cfg.epoch_size or cfg.n_samples - n_test
    # data.val_fraction: a fixed validation set too, drawn with the test set (all distinct)
    n_val = min(round(n_train * cfg.val_fraction), total - n_test) if cfg.val_fraction else 0
    fixed = encode(torch.from_numpy(draw_distinct(n_test + n_val, cfg.length, rng)), cfg.one_hot)
    x_test, y_test = fixed[0][:n_test], fixed[1][:n_test]

    def make_loader(batch_size: int, _train_seed: int, device: torch.device) -> StreamLoader:
        # Draws follow the data seed (train.seed unless data.seed is set), like the test set.
        return StreamLoader(cfg.length, cfg.one_hot, n_train, batch_size, seed, device)

    # x_train holds epoch 0's draw so sizes and summaries read as usual; training draws anew.
    first = StreamLoader(cfg.length, cfg.one_hot, n_train, n_train, seed, torch.device("cpu"))
    x_train, y_train = next(iter(first))
    info = {"variant": "stream", "n_palindromes": count_text(cfg.length)}
    bundle = DataBundle(
        x_train, y_train, x_test, y_test, **common, info=info, train_loader=make_loader
    )
    if n_val:
        bundle.x_val, bundle.y_val = fixed[0][n_test:], fixed[1][n_test:]
    return bundle
