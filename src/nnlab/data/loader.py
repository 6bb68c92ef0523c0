"""Tensor-resident batches: the whole split lives on the training device.

Instead of a DataLoader that collates one example at a time in Python, each
epoch gathers the split once in a seeded random order and yields views of it.
The order depends only on (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

# A batch transform (augmentation, normalisation) runs on whole batches on the device.
BatchTransform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose state is a pure function of (seed, epoch)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return g


class TensorLoader:
    """Yields ``(x, y)`` batches sliced from tensors already on the device.

    ``shuffle`` draws a fresh order each epoch (call ``set_epoch`` first, like
    ``DistributedSampler``); ``transform`` is applied to each whole batch.

    Data-parallel (``world_size`` > 1, see ``nnlab.engine.distributed``): ``batch_size``
    is the *global* batch. Every rank draws the same order for (seed, epoch), cuts
    it into global batches exactly as one process would, and takes the contiguous
    slice ``rank`` of each: ``batch_size // world_size`` examples. Equal shares
    keep DDP's average of per-rank mean gradients equal to the one-process
    gradient; so of a last, partial global batch each rank takes an equal share
    and the ``len % world_size`` examples left over sit out that epoch.

    ``min_last``: a last, partial batch (a rank's share of it) smaller than this sits out
    the epoch. A model with BatchNorm needs 2: in training it cannot normalise a batch of
    one example. The default 1 keeps every batch (only where a batch of one would occur does
    2 change anything).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        transform: BatchTransform | None = None,
        rank: int = 0,
        world_size: int = 1,
        min_last: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(
                f"need 0 <= rank < world_size dividing batch_size; got {rank}, {world_size}, {batch_size}"
            )
        self.rank, self.world_size = rank, world_size
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.min_last = max(1, min_last)
        self.transform = transform
        self.epoch = 0
        self.start_batch, self.start_generator = 0, None
        self.generator: torch.Generator | None = None  # the running epoch's draws (augmentation)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start_batch, self.start_generator = 0, None

    def resume_at(self, batch: int, generator_state: torch.Tensor | None) -> None:
        """Make the next epoch start at ``batch``, as if the first ``batch`` batches had been
        drawn: the same order, and the augmentation generator as it was then (one process)."""
        self.start_batch, self.start_generator = batch, generator_state

    def _last_share(self) -> int:
        """Examples of the last, partial batch this rank trains on (0: it sits out)."""
        share = 0 if self.drop_last else (len(self.x) % self.batch_size) // self.world_size
        return share if share >= self.min_last else 0

    def __len__(self) -> int:
        # a last partial batch counts if every rank gets a share of at least min_last of it
        return len(self.x) // self.batch_size + (1 if self._last_share() else 0)

    @property
    def num_examples(self) -> int:
        """Examples this rank yields per epoch."""
        n, b, w = len(self.x), self.batch_size, self.world_size
        return (n // b) * (b // w) + self._last_share()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, g = self.x, self.y, None
        if self.world_size > 1:
            yield from self._iter_shard()
            return
        if self.shuffle:
            g = epoch_generator(self.seed, self.epoch)
            perm = torch.randperm(len(x), generator=g).to(x.device)
            x, y = x[perm], y[perm]  # one gather per epoch, then views
        if self.start_generator is not None and g is not None:
            g.set_state(self.start_generator)  # the draws of the batches already trained
        self.generator = g
        n_full = min(len(self) * self.batch_size, len(x))  # without a last batch that sits out
        skip = self.start_batch * self.batch_size
        if skip >= n_full:  # resumed after its last batch (split would yield one empty batch)
            return
        for xb, yb in zip(
            x[skip:n_full].split(self.batch_size),
            y[skip:n_full].split(self.batch_size),
            strict=True,
        ):
            yield (self.transform(xb, g) if self.transform is not None else xb), yb

    def _iter_shard(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of every global batch (see the class docstring)."""
        n, b, w, r = len(self.x), self.batch_size, self.world_size, self.rank
        g = None
        if self.shuffle:
            g = epoch_generator(self.seed, self.epoch)
            order = torch.randperm(n, generator=g)  # on the CPU: the same order on every rank
            if r:  # but each rank its own augmentation draws (rank 0 keeps one process's stream)
                g = epoch_generator(self.seed + r * 7919, self.epoch)
        else:
            order = torch.arange(n)
        k, n_full = b // w, n // b  # per-rank batch, full global batches
        parts = [order[: n_full * b].view(n_full, w, k)[:, r].reshape(-1)]  # (n_full * k,)
        rest = order[n_full * b :]  # the last, partial global batch
        share = self._last_share()
        if share:
            parts.append(rest[r * share : (r + 1) * share])
        mine = torch.cat(parts).to(self.x.device)
        x, y = self.x[mine], self.y[mine]  # one gather per epoch, then views
        for xb, yb in zip(x.split(k), y.split(k), strict=True):
            yield (self.transform(xb, g) if self.transform is not None else xb), yb


class StackedLoader:
    """Batches for a stack of S runs (``nnlab.models.stacked``): ``(S, B, ...)``, ``(S, B)``.

    ``x`` is ``(S, N, ...)`` and ``y`` ``(S, N)``: run s's own split. With
    ``shuffle``, run s's order for an epoch is the one a lone ``TensorLoader``
    with its seed draws, so every member sees the batches its lone run sees.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        seeds: list[int],
        shuffle: bool = False,
    ) -> None:
        if x.shape[:2] != y.shape or len(seeds) != len(x):
            raise ValueError(f"need x (S, N, ...), y (S, N) and S seeds; got {x.shape}, {y.shape}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seeds, self.shuffle, self.epoch = list(seeds), shuffle, 0
        self.world_size, self.transform = 1, None  # as TensorLoader (never data-parallel)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.x.shape[1] // self.batch_size)

    @property
    def num_examples(self) -> int:
        return self.x.shape[1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.x, self.y
        if self.shuffle:  # each run's own order, then one gather: batches are views
            perm = torch.stack(
                [
                    torch.randperm(x.shape[1], generator=epoch_generator(s, self.epoch))
                    for s in self.seeds
                ]
            ).to(x.device)
            x = x.gather(1, perm.view(*perm.shape, *[1] * (x.dim() - 2)).expand_as(x))
            y = y.gather(1, perm)
        for lo in range(0, x.shape[1], self.batch_size):
            yield x[:, lo : lo + self.batch_size], y[:, lo : lo + self.batch_size]
