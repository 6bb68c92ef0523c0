"""``cnn-fast``: a small CIFAR-10 network built for time-to-accuracy, not for parameter count.

The ideas come from the published CIFAR-10 speed-record work (Page's "How to
train your ResNet" series, tysam-code's hlb-CIFAR10, Keller Jordan's airbench);
this is nnlab's own code. Layout for 3x32x32 inputs, widths ``64,256,256``::

    PatchWhitening 2x2 (frozen, 24 ch)  -> GELU                 (B, 24, 31, 31)
    group 64:  conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU   (B, 64, 15, 15)
    group 256: ...                                                        (B, 256, 7, 7)
    group 256: ...                                                        (B, 256, 3, 3)
    global max pool -> Linear(256, 10, no bias) -> x 1/9                  (B, 10)

A width written ``R512`` makes that group residual and one conv deeper (the
recipe of the public 96% record, used by the ``cnn`` preset)::

    conv3x3 -> maxpool2 -> BN -> GELU = x0;  x0 + BN(conv3x3(GELU(BN(conv3x3(x0))))) -> GELU

Why each piece is there:

- **Patch whitening.** The first layer's filters are fixed, not learned: the
  eigenvectors of the covariance of 2x2 training patches, each scaled by
  1/sqrt(eigenvalue + eps), plus their negatives (so the GELU after it keeps
  both signs). Every direction of patch space then starts at unit variance, so
  the convs after it see decorrelated inputs from step one instead of spending
  the first epochs learning edge detectors. ``init_from_data`` computes them
  from a sample of (normalised) training images; they are a buffer, so the
  optimizer never touches them and checkpoints carry them.
- **Pool before BatchNorm** in each group: BN and GELU then run on a quarter of
  the pixels, and BN's statistics describe the features the next conv sees.
- **BatchNorm without a learned scale** (shift only): the conv after it can
  absorb any scale, and a learned scale under weight decay only fights it.
  Running statistics use momentum 0.4 (PyTorch's convention: 40% of each new
  batch), because at a high learning rate the weights move fast and old batch
  statistics go stale within a few steps of a ~500-step run.
- **Shift learning rate.** Each BN shift is stored divided by ``shift_scale``
  (8) and multiplied back in ``forward``. Under SGD that multiplies its
  effective learning rate by 8**2 = 64 while its weight decay (lr x wd) stays
  as it was: the "bias scaler" of the record scripts, without a second
  parameter group. (Under Adam it scales the step by 8 instead.)
- **Dirac initialisation** of the first ``c_in`` filters of every conv: each
  conv starts by passing its input through, so the 7-layer net first trains
  like a shallow one and deepens as the identity filters move.
- **Scaled logits** (x 1/9, no bias): small initial logits keep the first steps
  at a high learning rate from saturating the softmax.

Returns logits; softmax belongs inside the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.errors import ConfigError
from nnlab.models.mlp import ACTIVATIONS

if TYPE_CHECKING:
    from nnlab.config import ModelConfig

FAST_WIDTHS = ["64", "256", "256"]


class PatchWhitening(nn.Module):
    """A frozen ``k`` x ``k`` conv that whitens image patches; only its bias trains.

    (B, C, H, W) -> (B, 2 * C * k * k, H - k + 1, W - k + 1). Until
    ``init_from_data`` is called the filters are a random orthogonal basis.
    """

    def __init__(self, channels: int, kernel_size: int = 2, eps: float = 5e-4) -> None:
        super().__init__()
        self.kernel_size, self.eps = kernel_size, eps
        d = channels * kernel_size * kernel_size
        basis = torch.linalg.qr(torch.randn(d, d))[0]  # (d, d), orthonormal rows
        self.register_buffer(
            "weight", torch.cat([basis, -basis]).view(2 * d, channels, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(2 * d))
        self.out_channels = 2 * d

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the filters from images ``x`` (N, C, H, W), as the model will see them (normalised).

        Patch covariance in float64, eigendecomposition, filters ``v / sqrt(lambda + eps)``;
        the bias starts at ``-w . mean`` so the layer's outputs start centred.
        """
        k = self.kernel_size
        c = x.shape[1]
        patches = x.double().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H-k+1, W-k+1, k, k)
        # (P, C*k*k), conv weight order
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        mean = patches.mean(0)
        centred = patches - mean
        cov = centred.T @ centred / len(centred)  # (d, d)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending; columns are eigenvectors
        filters = eigenvectors.T / (eigenvalues.clamp_min(0) + self.eps).sqrt()[:, None]  # (d, d)
        filters = torch.cat([filters, -filters])  # (2d, d)
        self.weight.copy_(filters.view_as(self.weight).to(self.weight.dtype))
        self.bias.copy_(-(filters @ mean).to(self.bias.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class ShiftBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with a learned shift and no learned scale; the shift is stored / ``shift_scale``."""

    def __init__(self, channels: int, momentum: float = 0.4, shift_scale: float = 8.0) -> None:
        super().__init__(channels, momentum=momentum, eps=1e-12, affine=False)
        self.shift_scale = shift_scale
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        # The shift in y's dtype: under bf16 autocast a float32 shift would promote every
        # activation after it to float32, and the GELU, pooling and the next conv's input
        # cast would then move twice the bytes (about a fifth of a CPU step of `cnn`'s net).
        return y + (self.shift * self.shift_scale).to(y.dtype).view(1, -1, 1, 1)


def dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 'same' conv, no bias (BatchNorm follows); its first ``min(c_in, c_out)`` filters start as identities."""
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        n = min(c_in, c_out)
        nn.init.dirac_(conv.weight[:n])
    return conv


class ConvGroup(nn.Sequential):
    """conv -> maxpool 2 -> BN -> act -> conv -> BN -> act. (B, c_in, H, W) -> (B, c_out, H // 2, W // 2)."""

    def __init__(self, c_in: int, c_out: int, activation: str, bn_momentum: float) -> None:
        super().__init__(
            dirac_conv(c_in, c_out),
            nn.MaxPool2d(2),
            ShiftBatchNorm(c_out, bn_momentum),
            ACTIVATIONS[activation](),
            dirac_conv(c_out, c_out),
            ShiftBatchNorm(c_out, bn_momentum),
            ACTIVATIONS[activation](),
        )


class ResidualConvGroup(nn.Module):
    """ConvGroup plus a third conv, with a skip over the last two. (B, c_in, H, W) -> (B, c_out, H // 2, W // 2).

    The skip lets the deeper, wider groups of the longer recipe train at the same high
    learning rate as the plain ones; the activation comes after the sum, as in the
    record script's final version.
    """

    def __init__(self, c_in: int, c_out: int, activation: str, bn_momentum: float) -> None:
        super().__init__()
        self.entry = nn.Sequential(
            dirac_conv(c_in, c_out),
            nn.MaxPool2d(2),
            ShiftBatchNorm(c_out, bn_momentum),
            ACTIVATIONS[activation](),
        )
        self.body = nn.Sequential(
            dirac_conv(c_out, c_out),
            ShiftBatchNorm(c_out, bn_momentum),
            ACTIVATIONS[activation](),
            dirac_conv(c_out, c_out),
            ShiftBatchNorm(c_out, bn_momentum),
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        return self.act(x + self.body(x))


class FastCNN(nn.Module):
    """Patch whitening, conv groups (one per width), global max pool, scaled linear head.

    ``widths`` holds ints (plain groups) or ``"R<int>"`` strings (residual groups).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        widths: list[int | str] | None = None,
        *,
        activation: str = "gelu",
        whiten_size: int = 2,
        bn_momentum: float = 0.4,
        logit_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"model.name: cnn-fast needs image inputs (C, H, W), got examples of shape {tuple(input_shape)}"
            )
        widths = widths or [int(w) for w in FAST_WIDTHS]
        channels, h, w = input_shape
        side = min(h, w) - whiten_size + 1
        if side < 2 ** len(widths):
            raise ConfigError(
                f"model.widths: {len(widths)} groups each halve the image; {h}x{w} inputs allow at most {max(side, 1).bit_length() - 1}"
            )
        self.whiten = PatchWhitening(channels, whiten_size)
        self.act = ACTIVATIONS[activation]()
        groups, c = [], self.whiten.out_channels
        for token in widths:
            residual = isinstance(token, str) and token.startswith("R")
            width = int(token[1:]) if residual else int(token)
            group = ResidualConvGroup if residual else ConvGroup
            groups.append(group(c, width, activation, bn_momentum))
            c = width
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c, n_classes, bias=False)
        self.logit_scale = logit_scale

    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (``fit`` calls it with normalised training images)."""
        self.whiten.init_from_data(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, n_classes)
        x = self.groups(self.act(self.whiten(x)))  # (B, c, h, w)
        # Global max pool as a pooling op, whose backward routes each gradient to the index it
        # kept. (torch.amax's backward re-finds the maxima by comparing values; under
        # torch.compile with bf16 the forward's maxima are rounded while the comparison sees
        # unrounded values, nothing matches, and the gradient is 0/0: NaN from the first step.)
        x = F.adaptive_max_pool2d(x, 1).flatten(1)  # (B, c)
        return self.head(x) * self.logit_scale


def build_fast_cnn(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> FastCNN:
    widths = list(cfg.widths)
    if not all(w.removeprefix("R").isdigit() and int(w.removeprefix("R")) > 0 for w in widths):
        raise ConfigError(
            "model.widths: cnn-fast takes one width per conv group, like 64,256,256"
            f" (R512: a residual group of three convs); got {widths}"
        )
    return FastCNN(
        input_shape,
        n_classes,
        [w if w.startswith("R") else int(w) for w in widths],
        activation=cfg.activation,
    )
