"""The training loop: loss falls, checkpoints round-trip, early stopping stops, runs are reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.data.loader import TensorLoader
from nnlab.engine.loop import fit
from nnlab.engine.optim import build_scheduler
from nnlab.engine.run import run_training
from nnlab.engine.setup import seed_everything
from nnlab.models import build_model
from nnlab.runs import METRIC_COLUMNS, load_checkpoint, read_metrics

FAST = ["train.epochs=20", "train.eval_every=5", "train.device=cpu"]


def _setup(overrides):
    cfg = load_config("moons", FAST + overrides)
    seed_everything(cfg.train.seed)
    data = load_data(cfg.data, cfg.train.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    return cfg, data, model


def test_loss_decreases_and_accuracy_rises():
    cfg, data, model = _setup([])
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    first, last = result.history[0], result.history[-1]
    assert [r["epoch"] for r in result.history] == [5, 10, 15, 20]
    assert last["train_loss"] < first["train_loss"]
    assert last["test_acc"] > 0.9


def test_run_folder_contract(tmp_path):
    cfg = load_config("moons", FAST)
    summary = run_training(cfg, tmp_path / "run", progress="off")
    run = tmp_path / "run"
    for name in (
        "config.toml",
        "metrics.csv",
        "summary.json",
        "curves.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / name).is_file(), name
    assert (run / "metrics.csv").read_text().splitlines()[0].split(",") == METRIC_COLUMNS
    rows = read_metrics(run / "metrics.csv")
    assert len(rows) == 4
    on_disk = json.loads((run / "summary.json").read_text())
    assert (
        on_disk["final_test_acc"]
        == summary["final_test_acc"]
        == pytest.approx(rows[-1]["test_acc"], abs=1e-6)
    )
    for key in (
        "best_test_acc",
        "final_test_loss",
        "epochs",
        "train_seconds",
        "seed",
        "device",
        "versions",
        "git_commit",
    ):
        assert key in on_disk
    # a saved config reproduces the same resolved settings
    assert load_config(str(run / "config.toml")).to_dict() == cfg.to_dict()


def test_checkpoint_round_trip(tmp_path):
    cfg = load_config("moons", FAST)
    run_training(cfg, tmp_path / "run", progress="off")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 20 and state["config"]["model"]["hidden"] == cfg.model.hidden
    data = load_data(cfg.data, cfg.train.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert acc == pytest.approx(
        json.loads((tmp_path / "run" / "summary.json").read_text())["final_test_acc"], abs=1e-6
    )


def test_early_stopping_stops():
    # lr so small nothing improves after the first evaluation: patience 2 ends it at the 3rd.
    cfg, data, model = _setup(
        ["optim.lr=1e-9", "schedule.name=none", "train.patience=2", "train.epochs=100"]
    )
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    assert result.epochs == 15 and "early stop" in result.stop_reason


def test_target_acc_stops():
    cfg, data, model = _setup(["train.target_acc=0.8", "train.epochs=100"])
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    assert result.epochs < 100 and result.history[-1]["test_acc"] >= 0.8


def test_same_seed_same_metrics(tmp_path):
    cfg = load_config("moons", FAST)
    run_training(cfg, tmp_path / "a", progress="off")
    run_training(cfg, tmp_path / "b", progress="off")
    strip = lambda p: [line.rsplit(",", 1)[0] for line in p.read_text().splitlines()]  # noqa: E731 (drop elapsed_s)
    assert strip(tmp_path / "a" / "metrics.csv") == strip(tmp_path / "b" / "metrics.csv")


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("schedule", ["none", "step", "cosine", "onecycle"])
def test_every_optimizer_and_schedule_trains(name, schedule):
    cfg, data, model = _setup(
        [
            f"optim.name={name}",
            f"schedule.name={schedule}",
            "schedule.step_size=5",
            "optim.momentum=0.9",
            "train.clip_norm=1.0",
        ]
    )
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] * 1.05


def test_schedules_shape_the_learning_rate():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(p, lr=1.0)
    cfg = load_config(
        "moons", ["schedule.name=step", "schedule.step_size=2", "schedule.gamma=0.5"]
    ).schedule
    sched, per_batch = build_scheduler(opt, cfg, epochs=6, steps_per_epoch=3)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert not per_batch and lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_loader_order_is_seeded_and_complete():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    a = TensorLoader(x, y, 3, shuffle=True, seed=1)
    b = TensorLoader(x, y, 3, shuffle=True, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    batches_a = [yb.tolist() for _, yb in a]
    assert batches_a == [yb.tolist() for _, yb in b]
    assert sorted(sum(batches_a, [])) == list(range(10)) and len(a) == 4
    b.set_epoch(5)
    assert batches_a != [yb.tolist() for _, yb in b]
    assert len(TensorLoader(x, y, 3, drop_last=True)) == 3


def test_init_from_starts_from_that_runs_weights(tmp_path):
    """A warm start (train.init_from): the new run's first weights are the old run's last ones."""
    first = load_config("moons", FAST)
    run_training(first, tmp_path / "a", progress="off")
    trained = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    # lr ~ 0: the second run ends (almost) where it started, so its weights show where that was
    for source in (tmp_path / "a", tmp_path / "a" / "checkpoints" / "best.pt"):
        again = load_config(
            "moons", [*FAST, "train.epochs=1", "optim.lr=1e-12", f"train.init_from={source}"]
        )
        run_training(again, tmp_path / "b", progress="off")
        started = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
        want = trained if source.is_dir() else load_checkpoint(source)["model"]
        for key in want:
            torch.testing.assert_close(started[key], want[key], rtol=0, atol=1e-6)
        (tmp_path / "b").rename(tmp_path / f"b-{source.name}")


def test_init_from_that_does_not_fit_is_one_line_exit_2(tmp_path, cli):
    from conftest import assert_one_line_error

    assert (
        cli(
            "train",
            "moons",
            *[a for kv in FAST for a in ("--set", kv)],
            "--out",
            "a",
            "--progress",
            "off",
        ).returncode
        == 0
    )
    wider = cli(
        "train", "moons", "--set", "model.hidden=8", "--set", "train.init_from=a", "--out", "b"
    )
    assert_one_line_error(wider, "train.init_from", "net.0.weight is (64, 2), not (8, 2)")
    missing = cli("train", "moons", "--set", "train.init_from=nowhere", "--out", "c")
    assert_one_line_error(missing, "nowhere", "not found")
    numpy = cli(
        "train", "moons", "--set", "model.backend=numpy", "--set", "train.init_from=a", "--out", "d"
    )
    assert_one_line_error(numpy, "train.init_from")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
