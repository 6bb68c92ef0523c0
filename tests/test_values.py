"""Values at the edges of their range: each one validation accepts works end to end, or is
refused with one line naming the key, before anything is written (docs/reliability.md,
"Values at the edges").

Schedules with a handful of steps, BatchNorm with a last batch of one example, stratified
splits smaller than the class count, seeds past what NumPy and scikit-learn take, and
``--jobs 0``: each failed with a traceback from a library before (issue 16, part 4).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.config.ranges import MAX_SEED
from nnlab.data.loader import TensorLoader
from nnlab.engine.optim import build_scheduler
from nnlab.errors import ConfigError

SCHEDULES = ["none", "step", "cosine", "onecycle", "triangle"]


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("pct_start", [1e-9, 0.2, 0.25, 1 / 3, 0.5, 0.999999])
def test_every_schedule_runs_any_number_of_steps(name, pct_start):
    """1..12 steps in all (a warm-up of exactly one step, e.g. one-cycle's 0.25 of 4 steps,
    divided by zero inside torch), every pct_start: each step gets a finite rate > 0."""
    for epochs, per_epoch in [(1, 1), (1, 2), (1, 3), (1, 4), (2, 2), (1, 5), (3, 4), (1, 12)]:
        cfg = load_config(
            "moons", [f"schedule.name={name}", f"schedule.pct_start={pct_start}"]
        ).schedule
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        scheduler, per_batch = build_scheduler(optimizer, cfg, epochs, per_epoch)
        for _ in range(epochs * per_epoch if per_batch else epochs):
            lr = optimizer.param_groups[0]["lr"]
            assert math.isfinite(lr) and lr > 0, (name, pct_start, epochs, per_epoch, lr)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()


def test_onecycle_with_a_warm_up_of_one_step_starts_at_the_peak():
    """0.25 of 4 steps: the limit of torch's formula, the peak rate at step 0, then down."""
    cfg = load_config("moons", ["schedule.name=onecycle", "schedule.pct_start=0.25"]).schedule
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheduler, _ = build_scheduler(optimizer, cfg, 1, 4)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.1) and rates == sorted(rates, reverse=True)


def test_a_last_batch_of_one_sits_out_only_where_asked():
    """``min_last=2`` (BatchNorm) drops a last batch of one and nothing else; the default
    keeps every batch, so runs without BatchNorm are unchanged."""
    x, y = torch.arange(33.0).view(-1, 1), torch.arange(33)
    plain = TensorLoader(x, y, 16, shuffle=True, seed=1)
    norm = TensorLoader(x, y, 16, shuffle=True, seed=1, min_last=2)
    assert len(plain) == 3 and [len(b) for b, _ in plain] == [16, 16, 1]
    assert len(norm) == 2 and [len(b) for b, _ in norm] == [16, 16]
    assert norm.num_examples == 32 and plain.num_examples == 33
    for a, b in zip(plain, norm, strict=False):  # the same order: only the last batch differs
        assert torch.equal(a[0], b[0])
    even = TensorLoader(torch.arange(34.0).view(-1, 1), torch.arange(34), 16, min_last=2)
    assert [len(b) for b, _ in even] == [16, 16, 2]  # a last batch of two stays
    # data-parallel: a rank's share of the last batch is what counts
    shards = [
        TensorLoader(
            torch.arange(35.0).view(-1, 1), torch.arange(35), 16, rank=r, world_size=2, min_last=2
        )
        for r in (0, 1)
    ]
    assert [len(s) for s in shards] == [2, 2] and shards[0].num_examples == 16


def test_batchnorm_with_a_last_batch_of_one_trains(cli, tmp_path):
    """33 training examples in batches of 16 left one example for a last batch: BatchNorm
    raised "Expected more than 1 value per channel when training". Now it sits out."""
    proc = cli(
        "train",
        "moons",
        *("--set", "model.batchnorm=true", "--set", "data.limit_train=33"),
        *("--set", "train.batch_size=16", "--set", "train.epochs=2", "--out", "bn"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "bn" / "summary.json").read_text())
    assert summary["n_train"] == 33 and summary["steps"] == 4  # 2 epochs x 2 full batches


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.batchnorm=true", "train.batch_size=1"], "train.batch_size"),
        (["model.batchnorm=true", "data.limit_train=1"], "data.limit_train"),
        (["data.test_fraction=0.001"], "data.test_fraction"),  # 1 test point, 2 classes
        (["data.test_fraction=0.999"], "data.test_fraction"),  # 1 training point
        (["data.n_samples=10", "data.test_fraction=0.1"], "data.test_fraction"),
        (["data.name=blobs", "data.centers=20", "data.n_samples=30"], "data.centers"),
        (["data.name=blobs", "data.centers=5", "data.n_samples=10"], "data.test_fraction"),
        ([f"train.seed={MAX_SEED + 1}"], "train.seed"),
        (["train.seed=99999999999999999999999"], "train.seed"),
        ([f"data.seed={MAX_SEED + 1}"], "data.seed"),
        (["data.seed=-5"], "data.seed"),
        (["data.augment=flip"], "data.augment"),  # moons are no images
        (["data.noise=1e300"], "data.noise"),
        (["data.name=blobs", "data.cluster_std=1e300"], "data.cluster_std"),
        (["model.forget_bias=1e308"], "model.forget_bias"),
        (["train.target_acc=-1"], "train.target_acc"),
        (["train.target_acc=1.5"], "train.target_acc"),
    ],
)
def test_values_that_cannot_work_are_refused_naming_the_key(cli, tmp_path, overrides, key):
    args = [a for o in overrides for a in ("--set", o)]
    proc = cli("train", "moons", *args, "--out", "x")
    assert_one_line_error(proc, key)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("moons", overrides)


def test_seeds_at_the_edge_of_the_range(cli, tmp_path):
    """The largest seed works (NumPy, scikit-learn and torch take it); --seeds may not pass it."""
    proc = cli("train", "moons", "--seed", str(MAX_SEED), "--set", "train.epochs=1", "--out", "s")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["seed"] == MAX_SEED
    args = ["--seed", str(MAX_SEED), "--seeds", "2", "--set", "train.epochs=1", "--out", "ss"]
    assert_one_line_error(cli("train", "moons", *args), "seeds", str(MAX_SEED - 1))
    assert not (tmp_path / "ss").exists()


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_jobs_and_seeds_must_be_at_least_one(cli, tmp_path, command):
    for flags, needle in [
        (["--seeds", "2", "--jobs", "0"], "--jobs"),
        (["--seeds", "0"], "--seeds"),
    ]:
        assert_one_line_error(cli(command, "moons", *flags, "--out", "j"), needle)
    assert not (tmp_path / "j").exists()


def test_minus_zero_is_zero_and_huge_integers_are_no_numbers():
    """-0.0 passed ``noise >= 0`` and then NumPy refused it as a negative scale; an integer
    past any float raised OverflowError inside the type conversion."""
    assert math.copysign(1, load_config("moons", ["data.noise=-0.0"]).data.noise) == 1
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        load_config("moons", {"optim.lr": 10**400})


def test_a_path_too_long_is_one_line_not_a_bug(cli, tmp_path):
    """ENAMETOOLONG from any ``Path.is_file()`` on a user's path: one line, exit 2."""
    long = "a" * 300
    for args in (
        ["train", "moons", "--out", long],
        ["resume", long],
        ["report", long, "--out", "r"],
        ["train", "moons", "--set", f"train.init_from={long}"],
        ["data", "cifar10", "--archive", long],
    ):
        assert_one_line_error(cli(*args), "File name too long")
