"""Test-time augmentation (``train.tta``) for image models: average logits over mirrored and shifted views.

A classifier trained with flips and small translations is nearly, but not
exactly, invariant to them; averaging its logits over a few such views of each
test image removes part of the remaining error for the cost of a few more
forward passes (evaluation only; training is unchanged). Levels:

- ``0``: the image alone.
- ``1``: the mean of the logits of the image and of its left-right mirror.
- ``2``: weight 1/2 on level 1's pair, and 1/4 each on the same pair shifted
  one pixel down-right and one pixel up-left (reflect-padded, like
  ``data.augment = crop``). The unshifted pair keeps the largest weight: it is
  the view the test images really are.

Views are built from the batch the model would see (normalised floats), so the
same code serves every image model and device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images moved ``dy`` pixels down and ``dx`` right (|d| <= 1), borders reflected. (B, C, H, W) -> same."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
    h, w = x.shape[2], x.shape[3]
    return padded[:, :, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


def mirror_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean logits of ``x`` and its left-right mirror, in one forward pass of 2B images."""
    b = len(x)
    logits = model(torch.cat([x, x.flip(3)]))  # (2B, n_classes)
    return (logits[:b] + logits[b:]) / 2


def tta_logits(model: nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """Logits of images ``x`` (B, C, H, W) averaged over the views of ``level`` (0, 1 or 2)."""
    if level == 0:
        return model(x)
    if level == 1:
        return mirror_logits(model, x)
    if level == 2:
        return (
            0.5 * mirror_logits(model, x)
            + 0.25 * mirror_logits(model, shift(x, 1, 1))
            + 0.25 * mirror_logits(model, shift(x, -1, -1))
        )
    raise ValueError(f"tta level must be 0, 1 or 2, got {level}")
