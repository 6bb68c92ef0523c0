"""VGG-style CNN built from a list of layer tokens, like timm's VGG ``cfgs``.

The architecture is data (``model.widths``), read left to right:

=========  ==================================================================
``"64"``   3x3 conv (padding 1) to 64 channels -> [BatchNorm] -> activation
``"R128"`` residual block at 128 channels: x + act(bn(conv(act(bn(conv(x))))))
           (ResNet-9 style; the input must already have 128 channels)
``"M"``    max-pool 2x2, stride 2 (VGG)
``"M3"``   max-pool 3x3, stride 2, no padding (the course report: 32 -> 15 -> 7)
``"A"``    average-pool 2x2, stride 2
``"G"``    global average pool to 1x1; ``"GM"`` global max pool
``"F512"`` flatten (at the first F), [Dropout] -> Linear to 512 -> activation
=========  ==================================================================

A final Linear to ``n_classes`` is always added (after Dropout when
``model.dropout`` > 0). The default, ``64,64,M3,128,128,M3,F512``, is the course
report's reduced VGG exactly: 3,477,066 parameters for 3x32x32 inputs and 10
classes. Returns logits; softmax belongs inside the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from nnlab.errors import ConfigError
from nnlab.models.mlp import ACTIVATIONS

if TYPE_CHECKING:
    from nnlab.config import ModelConfig

REPORT_WIDTHS = ["64", "64", "M3", "128", "128", "M3", "F512"]


def conv_block(c_in: int, c_out: int, activation: str, batchnorm: bool) -> list[nn.Module]:
    # No conv bias before BatchNorm: BN's shift makes it redundant.
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm),
        *([nn.BatchNorm2d(c_out)] if batchnorm else []),
        ACTIVATIONS[activation](),
    ]


class Residual(nn.Module):
    """``x + f(x)`` with ``f`` two conv blocks at the same width. (B, C, H, W) -> same."""

    def __init__(self, channels: int, activation: str, batchnorm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_block(channels, channels, activation, batchnorm),
            *conv_block(channels, channels, activation, batchnorm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CNN(nn.Module):
    """``features`` (convs and pools, from ``widths``) then ``classifier`` (dense layers)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        widths: list[str] | None = None,
        *,
        activation: str = "relu",
        batchnorm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"model.name: cnn needs image inputs (C, H, W), got examples of shape {tuple(input_shape)}"
            )
        self.widths = list(widths or REPORT_WIDTHS)
        channels, h, w = input_shape
        features: list[nn.Module] = []
        classifier: list[nn.Module] = [nn.Flatten()]
        flat: int | None = None  # set once the first dense layer flattens the feature map
        for token in self.widths:
            if flat is not None and not token.startswith("F"):
                raise ConfigError(
                    f"model.widths: '{token}' after a dense layer; convs and pools must come before F layers"
                )
            if token.isdigit():
                features += conv_block(channels, int(token), activation, batchnorm)
                channels = int(token)
            elif token.startswith("R"):
                if int(token[1:]) != channels:
                    raise ConfigError(
                        f"model.widths: residual '{token}' needs {token[1:]} input channels, gets {channels}"
                    )
                features.append(Residual(channels, activation, batchnorm))
            elif token in ("M", "A", "M3"):
                k = 3 if token == "M3" else 2
                h, w = (h - k) // 2 + 1, (w - k) // 2 + 1  # stride 2, no padding
                if h < 1 or w < 1:
                    raise ConfigError(
                        f"model.widths: pool '{token}' shrinks the {input_shape[1]}x{input_shape[2]} input below 1x1"
                    )
                features.append(nn.MaxPool2d(k, 2) if token != "A" else nn.AvgPool2d(2, 2))
            elif token in ("G", "GM"):
                features.append(
                    nn.AdaptiveAvgPool2d(1) if token == "G" else nn.AdaptiveMaxPool2d(1)
                )
                h = w = 1
            elif token.startswith("F"):
                flat = flat if flat is not None else channels * h * w
                if dropout:
                    classifier.append(nn.Dropout(dropout))
                classifier += [nn.Linear(flat, int(token[1:])), ACTIVATIONS[activation]()]
                flat = int(token[1:])
            else:  # config validation rejects these first; this guards direct use
                raise ConfigError(f"model.widths: unknown layer '{token}'")
        if dropout:
            classifier.append(nn.Dropout(dropout))
        classifier.append(nn.Linear(flat if flat is not None else channels * h * w, n_classes))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, n_classes)
        return self.classifier(self.features(x))


def build_cnn(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> CNN:
    return CNN(
        input_shape,
        n_classes,
        list(cfg.widths),
        activation=cfg.activation,
        batchnorm=cfg.batchnorm,
        dropout=cfg.dropout,
    )
