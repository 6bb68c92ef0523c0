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
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, g = self.x, self.y, None
        if self.shuffle:
            g = epoch_generator(self.seed, self.epoch)
            perm = torch.randperm(len(x), generator=g).to(x.device)
            x, y = x[perm], y[perm]  # one gather per epoch, then views
        n_full = len(self) * self.batch_size if self.drop_last else len(x)
        for xb, yb in zip(x[:n_full].split(self.batch_size), y[:n_full].split(self.batch_size), strict=True):
            yield (self.transform(xb, g) if self.transform is not None else xb), yb
