"""Batch transforms for uint8 images, run on whole batches on the training device.

Images stay resident as uint8 ``(N, C, H, W)`` (a quarter of float32's memory);
each batch is augmented, converted to float and normalised only when it is used.
Every random draw comes from the ``torch.Generator`` that ``TensorLoader`` passes
in (a pure function of seed and epoch), so a run's augmentation is reproducible.
The draws are made on the CPU generator and moved to the batch's device: they are
a few numbers per image, and this keeps one generator for every device.

Order (``ImageTransform.__call__``): shift (crop or translate) and flip on uint8,
then float conversion and per-channel normalisation, then cutout (zeros in
normalised units, i.e. the channel mean, as in DeVries & Taylor 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _rand(n: int, high: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` integers in ``[0, high)``, drawn on the CPU from ``g``, moved to ``device``."""
    return torch.randint(0, high, (n,), generator=g).to(device)


def random_shift(
    x: torch.Tensor, padding: int, g: torch.Generator | None, *, reflect: bool = True
) -> torch.Tensor:
    """Shift each image by up to ``padding`` pixels in x and y: a random crop of the padded image.

    ``reflect=True`` is the classic "pad 4 (reflect) and crop 32"; ``reflect=False``
    fills the uncovered border with zeros (a translation). Implemented as one gather
    with per-image row/column indices, so it works on uint8 without padding a copy.
    x: (B, C, H, W) -> (B, C, H, W)
    """
    b, _, h, w = x.shape
    dy = _rand(b, 2 * padding + 1, g, x.device) - padding  # (B,)
    dx = _rand(b, 2 * padding + 1, g, x.device) - padding
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (B, H) source rows
    cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (B, W) source columns
    if reflect:  # mirror indices that fall outside, like F.pad(mode="reflect")
        rows = torch.where(rows < 0, -rows, torch.where(rows > h - 1, 2 * (h - 1) - rows, rows))
        cols = torch.where(cols < 0, -cols, torch.where(cols > w - 1, 2 * (w - 1) - cols, cols))
    else:
        row_ok, col_ok = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
        inside = row_ok[:, :, None] & col_ok[:, None, :]  # (B, H, W)
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    if not reflect:
        out = out * inside[..., None].to(out.dtype)
    return out.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2. x: (B, C, H, W)."""
    flip = _rand(len(x), 2, g, x.device).bool()[:, None, None, None]
    return torch.where(flip, x.flip(3), x)


def cutout(x: torch.Tensor, size: int, g: torch.Generator | None) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image; its centre may lie anywhere, so it can be clipped."""
    b, _, h, w = x.shape
    cy = _rand(b, h, g, x.device)[:, None]  # (B, 1)
    cx = _rand(b, w, g, x.device)[:, None]
    ys = torch.arange(h, device=x.device)[None, :]  # (1, H)
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)  # (B, H)
    in_x = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)  # (B, W)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


class ImageTransform:
    """uint8 ``(B, C, H, W)`` batch -> augmented, normalised float32 batch; a ``BatchTransform``.

    ``mean``/``std`` are per channel in [0, 1] units; ``None`` only scales to [0, 1].
    ``augment`` names the steps (``crop`` | ``translate``, ``flip``, ``cutout``); the
    test loader gets an ``ImageTransform`` with no augmentation.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Sequence[str] = (),
        *,
        padding: int = 4,
        cutout_size: int = 8,
        channels_last: bool = False,
    ) -> None:
        unknown = set(augment) - {"crop", "translate", "flip", "cutout"}
        if unknown:
            raise ValueError(f"unknown augmentation(s): {sorted(unknown)}")
        self.augment = tuple(augment)
        self.padding, self.cutout_size, self.channels_last = padding, cutout_size, channels_last
        self.mean = torch.tensor(mean if mean is not None else [0.0], dtype=torch.float32)
        self.std = torch.tensor(std if std is not None else [1.0], dtype=torch.float32)

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        if "crop" in self.augment:
            x = random_shift(x, self.padding, g, reflect=True)
        elif "translate" in self.augment:
            x = random_shift(x, self.padding, g, reflect=False)
        if "flip" in self.augment:
            x = random_flip(x, g)
        if self.mean.device != x.device:  # moved once, on first use on a new device
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        # (x / 255 - mean) / std as one multiply-add: x * scale + shift, scale/shift (1, C, 1, 1)
        scale = (1.0 / (255.0 * self.std)).view(1, -1, 1, 1)
        shift = (-self.mean / self.std).view(1, -1, 1, 1)
        x = torch.addcmul(shift, x.float(), scale)
        if "cutout" in self.augment:
            x = cutout(x, self.cutout_size, g)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __repr__(self) -> str:
        return f"ImageTransform(augment={list(self.augment)}, padding={self.padding}, cutout_size={self.cutout_size})"


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)`` in [0, 1] units.

    Summed in float64 over chunks, so a memory-mapped 50k-image set is never
    converted to float all at once.
    """
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for part in x.split(chunk):
        p = part.to(torch.float64).div_(255.0)
        s += p.sum(dim=(0, 2, 3))
        s2 += p.square().sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
