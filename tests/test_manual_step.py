"""The hand-derived MLP step (nnlab/engine/manual_step.py) against autograd and torch.optim."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.engine.loop import fit
from nnlab.engine.manual_step import ManualMLPStep
from nnlab.engine.optim import build_optimizer
from nnlab.engine.plan import manual_step_refusal as unsupported
from nnlab.engine.setup import seed_everything
from nnlab.models import build_model
from nnlab.models.mlp import MLP

FAST = ["train.epochs=12", "train.eval_every=3", "train.device=cpu"]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "gelu"])
@pytest.mark.parametrize("hidden", [[], [7], [6, 5]])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_gradients_equal_autograd(activation, hidden, label_smoothing):
    torch.manual_seed(0)
    model = MLP(12, hidden, 4, activation=activation).double()
    x = torch.randn(9, 3, 4, dtype=torch.float64)  # flattened to 12 inputs, as MLP.forward does
    y = torch.randint(0, 4, (9,))
    loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    logits, grads = ManualMLPStep(
        model, opt, activation, label_smoothing=label_smoothing
    ).gradients(x, y)
    torch.testing.assert_close(logits, model(x).detach(), rtol=0, atol=1e-12)
    assert len(grads) == len(expected)
    for got, want in zip(grads, expected, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _fit(overrides, manual: str):
    cfg = load_config("seed-moons", [*FAST, f"train.manual_step={manual}", *overrides])
    seed_everything(cfg.train.seed)
    data = load_data(cfg.data, cfg.train.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    return model, result.history


@pytest.mark.parametrize(
    "overrides",
    [
        [],  # the report's SGD
        [
            "optim.momentum=0.9",
            "optim.nesterov=true",
            "optim.weight_decay=1e-3",
            "schedule.name=cosine",
        ],
        [
            "optim.momentum=0.9",
            "optim.weight_decay=1e-2",
            "train.clip_norm=0.5",
            "train.label_smoothing=0.1",
        ],
        ["optim.name=adam", "optim.lr=1e-2", "model.activation=relu", "model.hidden=16,8"],
        ["optim.name=rmsprop", "optim.lr=1e-3", "model.activation=tanh", "train.clip_norm=1"],
    ],
)
def test_training_matches_autograd_and_torch_optim(overrides):
    manual_model, manual_rows = _fit(overrides, "on")
    auto_model, auto_rows = _fit(overrides, "off")
    for a, b in zip(
        manual_model.state_dict().values(), auto_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert [r["epoch"] for r in manual_rows] == [r["epoch"] for r in auto_rows]
    for mine, theirs in zip(manual_rows, auto_rows, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
            assert mine[key] == pytest.approx(theirs[key], abs=2e-4), key


def test_momentum_buffers_live_where_sgd_keeps_them():
    """So checkpoints hold them and a resumed run (either path) goes on from them."""
    model, _ = _fit(["optim.momentum=0.9"], "on")
    cfg = load_config("seed-moons", ["optim.momentum=0.9"])
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = ManualMLPStep(model, opt, "sigmoid")
    x, y = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1])
    step.step(x, y)
    state = opt.state_dict()["state"]
    assert sorted(state) == [0, 1, 2, 3]
    assert all(
        s["momentum_buffer"].shape == p.shape
        for s, p in zip(state.values(), model.parameters(), strict=True)
    )


def test_step_returns_loss_only_when_tracking():
    model = MLP(2, [4], 2)
    step = ManualMLPStep(model, torch.optim.SGD(model.parameters(), lr=0.1), "relu")
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    loss, logits = step.step(x, y, track=True)
    assert loss is not None and loss.shape == () and logits.shape == (6, 2)
    assert step.step(x, y, track=False)[0] is None
    assert all(p.grad is None for p in model.parameters())  # SGD updated in place, no .grad kept


def test_optimizer_must_hold_the_mlp_parameters_in_order():
    model = MLP(2, [4], 2)
    params = list(model.parameters())
    with pytest.raises(ValueError, match="in order"):
        ManualMLPStep(model, torch.optim.SGD(params[::-1], lr=0.1), "relu")


@pytest.mark.parametrize(
    ("preset", "overrides", "reason"),
    [
        ("seed-cnn", [], "torch MLP"),
        ("seed-rnn", [], "torch MLP"),
        ("moons", ["model.dropout=0.1"], "dropout"),
        ("moons", ["model.batchnorm=true"], "BatchNorm"),
        ("moons", ["model.backend=numpy"], "torch MLP"),
        ("moons", ["train.ema=0.9"], "ema"),
    ],
)
def test_unsupported_runs_say_why(preset, overrides, reason):
    assert reason in unsupported(load_config(preset, overrides), amp=False)


def test_qualifying_runs_use_it_and_say_so_in_the_summary(tmp_path, cli):
    assert unsupported(load_config("seed-moons"), amp=False) is None
    assert "amp" in unsupported(load_config("seed-moons"), amp=True)
    args = [
        "train",
        "seed-moons",
        "--set",
        "train.epochs=2",
        "--device",
        "cpu",
        "--progress",
        "off",
    ]
    assert cli(*args, "--out", "on").returncode == 0
    assert json.loads((tmp_path / "on" / "summary.json").read_text())["manual_step"] is True
    assert cli(*args, "--out", "off", "--set", "train.manual_step=off").returncode == 0
    assert json.loads((tmp_path / "off" / "summary.json").read_text())["manual_step"] is False


def test_forcing_it_on_a_run_it_cannot_train_is_one_line_exit_2(tmp_path, cli):
    proc = cli(
        "train",
        "moons",
        "--set",
        "model.dropout=0.2",
        "--set",
        "train.manual_step=on",
        "--out",
        "run",
    )
    assert_one_line_error(proc, "train.manual_step", "dropout")
    assert not (tmp_path / "run").exists()
