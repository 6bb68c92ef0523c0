"""Data-parallel training (torchrun + DDP, gloo on the CPU).

The fast tests check the loader's sharding and the launch checks in this process
(torchrun's environment faked with monkeypatch). The slow ones start real
2-process jobs with ``python -m torch.distributed.run`` (about 10-25 s each on
2 cores): 2 ranks give the same weights as 1 process, a failing rank ends the
job within seconds, the job it left resumes to the uninterrupted weights, and
mismatched configs give one line from rank 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, assert_one_line_error
from nnlab.config import load_config
from nnlab.data.loader import TensorLoader
from nnlab.engine import distributed
from nnlab.engine.run import run_training
from nnlab.runs import load_checkpoint, read_json, read_metrics

TORCHRUN_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
# 1001 moons points -> 800 train (8 global batches of 100: equal shares, nothing dropped)
# and 201 test (shares of 101 and 100: exercises the weighted all-reduce).
EXACT = [
    "data.n_samples=1001",
    "train.epochs=12",
    "train.eval_every=4",
    "train.batch_size=100",
    "train.device=cpu",
    "train.checkpoint_every_s=0",  # a checkpoint at every evaluation (under torchrun there are no others)
]
SET_EXACT = [a for kv in EXACT for a in ("--set", kv)]


def torchrun(
    *args: str,
    nproc: int = 2,
    env: dict | None = None,
    timeout: float = 120,
    no_python: bool = False,
):
    """Run ``torchrun --standalone --nproc-per-node=N -m nnlab ARGS`` (or a ``--no-python`` command)."""
    base = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    # A bug that leaves a rank waiting fails the test in 30 s instead of hanging it.
    full_env = {**base, "PYTHONPATH": str(REPO / "src"), "NNLAB_DIST_TIMEOUT": "30", **(env or {})}
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
    ]
    command = [*launcher, "--no-python", *args] if no_python else [*launcher, "-m", "nnlab", *args]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nnlab: error:")]


@pytest.fixture
def fake_torchrun(monkeypatch):
    """Pretend to be one process of a torchrun job (no process group is started)."""

    def _set(
        rank: int = 0, world: int = 2, local_rank: int | None = None, local_world: int | None = None
    ):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_RANK", str(rank if local_rank is None else local_rank))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(world if local_world is None else local_world))

    monkeypatch.setattr(distributed, "QUIET_EXIT_PAUSE_S", 0.0)
    return _set


# --------------------------------------------------------------------------- the loader's shards


def _batches(loader: TensorLoader, epoch: int) -> list[list[int]]:
    loader.set_epoch(epoch)
    return [y.tolist() for _, y in loader]


@pytest.mark.parametrize(
    ("n", "batch", "world"), [(24, 6, 2), (24, 6, 3), (23, 6, 2), (29, 8, 4), (5, 4, 4)]
)
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_cut_the_one_process_batches(n, batch, world, drop_last):
    x, y = torch.randn(n, 3), torch.arange(n)
    one = _batches(TensorLoader(x, y, batch, shuffle=True, seed=7, drop_last=drop_last), epoch=3)
    loaders = [
        TensorLoader(
            x, y, batch, shuffle=True, seed=7, drop_last=drop_last, rank=r, world_size=world
        )
        for r in range(world)
    ]
    shards = [_batches(loader, epoch=3) for loader in loaders]
    # every rank takes as many steps, and yields what it says it does
    assert len({len(s) for s in shards}) == 1 and all(len(ld) == len(shards[0]) for ld in loaders)
    assert all(ld.num_examples == sum(map(len, s)) for ld, s in zip(loaders, shards, strict=True))
    for step, global_batch in enumerate(zip(*shards, strict=True)):
        # equal shares: DDP's mean of means is exact
        assert len({len(part) for part in global_batch}) == 1
        joined = [i for part in global_batch for i in part]
        if len(one[step]) % world == 0:
            assert joined == one[step]  # the same examples, in the same order, as one process
        else:  # the last partial batch: equal shares, the rest sit out this epoch
            assert joined == one[step][: len(joined)] and len(one[step]) - len(joined) < world
    assert len(shards[0]) == len(one) or (not drop_last and len(one[-1]) < world)


def test_shards_differ_by_epoch_and_agree_across_ranks():
    x, y = torch.randn(40, 2), torch.arange(40)
    a0, a1 = (TensorLoader(x, y, 10, shuffle=True, seed=1, rank=r, world_size=2) for r in range(2))
    e1 = [_batches(a0, 1), _batches(a1, 1)]
    # each example once per epoch
    assert sorted(i for s in e1 for b in s for i in b) == list(range(40))
    assert _batches(a0, 2) != e1[0]


def test_loader_rejects_a_batch_the_world_cannot_split():
    with pytest.raises(ValueError, match="dividing batch_size"):
        TensorLoader(torch.zeros(10, 1), torch.zeros(10), 5, rank=0, world_size=2)


def test_helpers_do_nothing_without_torchrun(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    t = torch.arange(5)
    model = torch.nn.Linear(2, 2)
    assert (
        not distributed.is_distributed() and distributed.is_main() and distributed.world_size() == 1
    )
    assert distributed.shard(t) is t and distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.average({"acc": 0.5}, 10) == {"acc": 0.5}


# --------------------------------------------------------------------------- launch checks (in this process)


def test_batch_not_divisible_by_world_is_one_line_from_rank_0(cli, fake_torchrun):
    fake_torchrun(rank=0, world=3)
    assert_one_line_error(
        cli("train", "moons", "--set", "train.batch_size=32", "--device", "cpu"),
        "train.batch_size",
        "30 or 33",
    )
    fake_torchrun(rank=1, world=3)
    quiet = cli("train", "moons", "--set", "train.batch_size=32", "--device", "cpu")
    assert quiet.returncode == 2 and quiet.stderr == ""  # rank 0 speaks for the job


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--set", "train.device=cuda:1"], "train.device"),
        (["--device", "mps"], "train.device"),
        (["--device", "cpu", "--seeds", "2"], "--seeds"),
        (["--device", "cpu", "--set", "model.backend=numpy"], "model.backend"),
    ],
)
def test_launch_errors_under_torchrun(cli, fake_torchrun, argv, needle):
    fake_torchrun(rank=0, world=2)
    assert_one_line_error(cli("train", "moons", *argv), needle)


@pytest.mark.parametrize("gpus", [0, 2])
def test_more_processes_than_gpus_is_one_line(cli, fake_torchrun, monkeypatch, tmp_path, gpus):
    # A real `torchrun --nproc-per-node=2 ... --device cuda` on a CPU-only machine prints the gpus=0
    # line (docs/distributed.md); faking the count also covers 4 processes on a 2-GPU node.
    fake_torchrun(rank=0, world=4, local_world=4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    needles = ("--nproc-per-node", "--nproc-per-node=2") if gpus else ("train.device", "no CUDA")
    assert_one_line_error(cli("train", "moons", "--device", "cuda"), *needles)
    assert not any(tmp_path.iterdir())


def test_sweep_is_refused_under_torchrun(cli, fake_torchrun):
    fake_torchrun(rank=0, world=2)
    assert_one_line_error(cli("sweep", "moons", "--grid", "optim.lr=1e-3,1e-2"), "torchrun")


# --------------------------------------------------------------------------- real 2-process jobs


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """An uninterrupted 2-rank run of the EXACT settings (shared by two tests: torchrun is slow)."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    proc = torchrun("train", "seed-moons", *SET_EXACT, "--out", str(out), "--progress", "off")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final_test_acc") == 1  # rank 0 reports; rank 1 stays quiet
    return out


def _weights(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _rows(run) -> list[dict[str, float]]:
    return [
        {k: v for k, v in r.items() if k != "elapsed_s"} for r in read_metrics(run / "metrics.csv")
    ]


def test_two_ranks_give_the_weights_of_one_process(two_ranks, tmp_path):
    # seed-moons: MLP, SGD, Sigmoid, no dropout, no BatchNorm -> deterministic.
    one = run_training(load_config("seed-moons", EXACT), tmp_path / "one", progress="off")
    w1, w2 = _weights(tmp_path / "one"), _weights(two_ranks)
    assert w1.keys() == w2.keys()  # no DDP "module." prefix: loads in one process
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=1e-5, rtol=0)
    # all-reduced metrics are the whole-set metrics one process measures
    m1, m2 = _rows(tmp_path / "one"), _rows(two_ranks)
    assert [r["step"] for r in m2] == [r["step"] for r in m1] == [32, 64, 96]
    for r1, r2 in zip(m1, m2, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert r2[key] == pytest.approx(r1[key], abs=1e-5), key
    summary = read_json(two_ranks / "summary.json")
    assert summary["world_size"] == 2 and summary["n_test"] == 201
    assert summary["final_test_acc"] == pytest.approx(one["final_test_acc"], abs=1e-6)


def test_a_failing_rank_ends_the_job_within_seconds_and_it_resumes(two_ranks, tmp_path):
    # Rank 1 raises at step 50 (epoch 7); rank 0 is then waiting in the gradient all-reduce.
    # Without a clean shutdown it would wait there until NNLAB_DIST_TIMEOUT (30 s).
    out = tmp_path / "r"
    fault = {distributed.FAULT_ENV: "rank=1,step=50"}
    proc = torchrun("train", "seed-moons", *SET_EXACT, "--out", str(out), env=fault)
    ended = time.time()
    assert proc.returncode != 0
    raised = re.search(
        r"injected failure on rank 1 at training step 50 \(unix time ([\d.]+)\)", proc.stderr
    )
    assert raised, proc.stderr[-3000:]
    assert ended - float(raised.group(1)) < 15, (
        "the job outlived its failing rank by more than 15 s"
    )
    assert not (out / "summary.json").exists()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 4

    # Both ranks resume from the same last.pt and end where the uninterrupted job ended.
    proc = torchrun("resume", str(out), "--progress", "off")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, uninterrupted = _weights(out), _weights(two_ranks)
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], atol=1e-6, rtol=0)
    assert _rows(out) == _rows(two_ranks)


def test_mismatched_configs_stop_with_one_line_from_rank_0(tmp_path):
    # Each rank resolves its own train.seed from $RANK: a real mismatch, as differing files on two nodes would be.
    cmd = f"exec {sys.executable} -m nnlab train seed-moons --set train.epochs=2 --set train.seed=$RANK --device cpu --out {tmp_path / 'r'}"
    proc = torchrun("sh", "-c", cmd, no_python=True, timeout=90)
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "config differs across ranks: train.seed is 0 on rank 0 but 1 on rank 1" in lines[0]
    assert not (tmp_path / "r").exists()
