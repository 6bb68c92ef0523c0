"""The VGG-style CNN: the report's network exactly, widths as data, options, amp/channels_last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.data.loader import TensorLoader
from nnlab.engine.loop import train_one_epoch
from nnlab.engine.setup import _cpu_bf16_units, speed_settings
from nnlab.engine.steps import AutogradStep
from nnlab.errors import ConfigError
from nnlab.models import build_model
from nnlab.models.cnn import CNN


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_is_the_reports_network():
    cfg = load_config("seed-cnn")
    model = build_model(cfg.model, (3, 32, 32), 10)
    assert n_params(model) == 3_477_066
    kinds = [type(m).__name__ for m in model.modules() if not isinstance(m, (nn.Sequential, CNN))]
    assert kinds == [
        *["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"],
        *["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"],
        *["Flatten", "Linear", "ReLU", "Linear"],
    ]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)
    assert model.classifier[1].in_features == 128 * 7 * 7  # 32 -> 15 -> 7
    assert CNN((3, 32, 32), 10).widths == cfg.model.widths  # the dataclass default is the same net


def test_options_batchnorm_dropout_residual_pools():
    model = CNN(
        (3, 16, 16),
        5,
        ["8", "A", "R8", "16", "M", "GM", "F12"],
        batchnorm=True,
        dropout=0.2,
        activation="gelu",
    )
    names = [type(m).__name__ for m in model.modules()]
    assert names.count("BatchNorm2d") == 4 and names.count("Dropout") == 2
    assert "Residual" in names and "AvgPool2d" in names and "AdaptiveMaxPool2d" in names
    # BatchNorm's shift makes a conv bias redundant
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in model.modules())
    assert model(torch.randn(3, 3, 16, 16)).shape == (3, 5)
    assert model.classifier[2].in_features == 16  # global pool -> 16 features


@pytest.mark.parametrize(
    "widths, message",
    [
        (["8", "R16"], "needs 16 input channels"),
        (["8", "M", "M", "M", "M"], "below 1x1"),
        (["F8", "8"], "after a dense layer"),
    ],
)
def test_bad_architectures(widths, message):
    with pytest.raises(ConfigError, match=message):
        CNN((3, 8, 8), 10, widths)


def test_widths_validated_in_config(cli):
    assert_one_line_error(cli("train", "seed-cnn", "--set", "model.widths=64,X7"), "model.widths")
    with pytest.raises(ConfigError, match="cnn needs image inputs"):
        build_model(load_config("moons", ["model.name=cnn"]).model, (2,), 2)


def test_amp_and_channels_last_train_on_cpu():
    cfg = load_config("seed-cnn", ["train.amp=on", "train.channels_last=on"])
    amp, channels_last = speed_settings(cfg, torch.device("cpu"), (3, 32, 32))
    assert amp and channels_last
    # auto: on for image models where the CPU has native bf16 units, never for vectors
    native = bool(_cpu_bf16_units())
    assert speed_settings(load_config("seed-cnn"), torch.device("cpu"), (3, 32, 32)) == (
        native,
        native,
    )
    assert speed_settings(load_config("moons"), torch.device("cpu"), (2,)) == (False, False)
    assert speed_settings(
        load_config("seed-cnn", ["train.amp=off", "train.channels_last=off"]),
        torch.device("cpu"),
        (3, 32, 32),
    ) == (False, False)
    torch.manual_seed(0)
    model = CNN((3, 8, 8), 10, ["8", "M", "F16"]).to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    loader = TensorLoader(x, torch.randint(0, 10, (32,)), 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_one_epoch(AutogradStep(model, model, opt, amp=True), loader)
    assert 0 <= metrics["train_acc"] <= 1 and torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # autocast keeps float32 master weights
    assert all(p.dtype == torch.float32 for p in model.parameters())
