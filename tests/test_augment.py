"""Batch augmentation: correct geometry, deterministic per seed, normalisation as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnlab.data.augment import ImageTransform, channel_stats, cutout, random_flip, random_shift
from nnlab.data.loader import TensorLoader, epoch_generator


def images(n: int = 16, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )


def test_reflect_crop_matches_pad_then_crop():
    x = images()
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, g, reflect=True)
    # Replay the same draws and crop a reflect-padded copy by hand.
    g = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (16,), generator=g) - 2
    dx = torch.randint(0, 5, (16,), generator=g) - 2
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(16):
        y0, x0 = 2 + dy[i], 2 + dx[i]
        assert torch.equal(out[i].float(), padded[i, :, y0 : y0 + 8, x0 : x0 + 8])
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_translate_fills_zeros_and_keeps_content():
    x = torch.full((64, 1, 6, 6), 200, dtype=torch.uint8)
    out = random_shift(x, 2, torch.Generator().manual_seed(0), reflect=False)
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros > 0).any() and (zeros == 0).any()  # some shifted, some (0, 0)
    assert set(out.unique().tolist()) <= {0, 200}


def test_flip_mirrors_about_half():
    x = images(n=400)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(3)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 150 < int(flipped.sum()) < 250


def test_cutout_zeroes_at_most_a_square():
    x = torch.ones(50, 3, 16, 16)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    zeroed = (out == 0).all(1).flatten(1).sum(1)  # per image, pixels zero in every channel
    assert (zeroed <= 16).all() and (zeroed > 0).all()
    assert ((out == 0) | (out == 1)).all()


def test_normalisation_and_stats():
    x = images(n=64)
    mean, std = channel_stats(x, chunk=10)
    ref = x.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), ref.mean((0, 2, 3)), atol=1e-9)
    assert torch.allclose(
        torch.tensor(std, dtype=torch.float64), ref.std((0, 2, 3), unbiased=False), atol=1e-9
    )
    out = ImageTransform(mean, std)(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(ImageTransform()(x), x.float() / 255)


def test_channels_last_output():
    out = ImageTransform(augment=["flip"], channels_last=True)(
        images(), torch.Generator().manual_seed(0)
    )
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_unknown_augmentation_rejected():
    with pytest.raises(ValueError, match="rotate"):
        ImageTransform(augment=["rotate"])


def epoch_batches(seed: int, epoch: int) -> list[torch.Tensor]:
    x, y = images(n=40), torch.arange(40)
    tf = ImageTransform([0.5] * 3, [0.25] * 3, ["crop", "flip", "cutout"], padding=2, cutout_size=3)
    loader = TensorLoader(x, y, 16, shuffle=True, seed=seed, transform=tf)
    loader.set_epoch(epoch)
    return [torch.cat([xb.flatten(1), yb[:, None].float()], 1) for xb, yb in loader]


def test_order_and_augmentation_deterministic_per_seed():
    a, b = epoch_batches(3, 1), epoch_batches(3, 1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    other_seed, other_epoch = epoch_batches(4, 1), epoch_batches(3, 2)
    assert not torch.equal(torch.cat(a), torch.cat(other_seed))
    assert not torch.equal(torch.cat(a), torch.cat(other_epoch))


def test_epoch_generator_is_pure():
    a = torch.rand(3, generator=epoch_generator(5, 7))
    b = torch.rand(3, generator=epoch_generator(5, 7))
    assert torch.equal(a, b)
