"""Crash safety: atomic writes, numerical faults, resource faults, hostile checkpoints, determinism."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.engine.run import run_training
from nnlab.errors import RunError
from nnlab.runs import atomic_write_text, load_checkpoint, save_checkpoint
from nnlab.runs import files as runs

FAST = ["train.epochs=6", "train.eval_every=2", "train.device=cpu", "data.n_samples=200"]


class _Payload:
    """Unpickling this would call Path.touch(marker): proof of code execution if the file appears."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_hostile_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(RunError, match="not a loadable nnlab checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage", b"PK\x03\x04truncated zip"])
def test_garbage_checkpoint_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(RunError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and "bad.pt" in str(err.value)


def test_atomic_write_keeps_old_file_when_disk_is_full(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", full_disk)
    with pytest.raises(RunError, match="No space left on device"):
        atomic_write_text(target, "new content that does not fit")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left behind


def test_checkpoint_write_failure_mid_run_is_clean(tmp_path, monkeypatch, cli):
    """Disk full while checkpointing: one line, non-zero exit, last.pt still the previous good one."""
    real_save = runs.save_checkpoint
    calls = {"n": 0}

    def flaky_save(path, state):
        calls["n"] += 1
        if calls["n"] > 2:  # the first evaluation's last.pt and best.pt succeed
            raise RunError(f"cannot write {path}: No space left on device")
        real_save(path, state)

    monkeypatch.setattr("nnlab.engine.sinks.save_checkpoint", flaky_save)
    proc = cli(
        "train",
        "moons",
        *[a for kv in FAST for a in ("--set", kv)],
        *["--set", "train.checkpoint_every_s=0"],  # a checkpoint at every evaluation
        "--out",
        "r",
        "--progress",
        "off",
    )
    assert_one_line_error(proc, "No space left on device")
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["epoch"] == 2
    assert not (tmp_path / "r" / "summary.json").exists()  # not finished, so a sweep reruns it


def test_unwritable_out(tmp_path, cli):
    if os.geteuid() == 0:
        # root ignores permission bits; a path under a regular file can never be created
        (tmp_path / "file").write_text("x")
        out = "file/sub/run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = "locked/run"
    proc = cli("train", "moons", "--set", "train.epochs=1", "--out", out)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_nan_loss_stops_with_one_line_and_records_it(tmp_path, cli):
    args = ["--set", "optim.name=sgd", "--set", "optim.lr=1e12", "--set", "model.activation=relu"]
    args += ["--set", "train.epochs=20", "--set", "train.eval_every=2"]
    proc = cli("train", "moons", *args, "--out", "r", "--progress", "off")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "epoch" in lines[0]
        and "optim.lr" in lines[0]
        and "Traceback" not in proc.stderr
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (
        summary["status"] == "diverged"
        and summary["final_test_acc"] is None
        and "nan" in summary["error"]
    )


def test_same_config_and_seed_is_bit_identical(tmp_path):
    cfg = load_config("moons", FAST + ["model.dropout=0.2"])  # dropout: the global RNG matters too
    run_training(cfg, tmp_path / "a", progress="off")
    run_training(cfg, tmp_path / "b", progress="off")

    def rows(run):  # every column but elapsed_s (wall time)
        return [
            line.rsplit(",", 1)[0]
            for line in (tmp_path / run / "metrics.csv").read_text().splitlines()
        ]

    assert rows("a") == rows("b")
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_save_checkpoint_is_weights_only_loadable(tmp_path):
    state = {
        "model": {"w": torch.ones(2)},
        "epoch": 3,
        "rng": torch.get_rng_state(),
        "config": {"a": [1, 2]},
    }
    save_checkpoint(tmp_path / "c.pt", state)
    again = torch.load(tmp_path / "c.pt", weights_only=True)
    assert again["epoch"] == 3 and torch.equal(again["model"]["w"], torch.ones(2))


def test_cuda_out_of_memory_is_one_line(cli, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB\nmore details"
        )

    monkeypatch.setattr("nnlab.engine.run.fit", oom)
    proc = cli("train", "moons", "--set", "train.epochs=1", "--out", "r")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA out of memory" in lines[0] and "train.batch_size" in lines[0]


def test_archive_members_cannot_escape(tmp_path, cli):
    """A tarball with '../' and absolute member names: nothing is written outside (or inside) the data folder."""
    import io
    import tarfile

    outside = tmp_path / "outside.txt"
    absolute = tmp_path / "abs" / "absolute.txt"
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ["../outside.txt", str(absolute), "cifar-10-batches-py/../../outside.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"pwnd"))
    data = tmp_path / "data"
    proc = cli("data", "cifar10", "--archive", str(archive), "--dir", str(data))
    assert_one_line_error(proc, "evil.tar.gz")
    assert not outside.exists() and not absolute.exists()
    assert not data.exists() or not any(p.is_file() for p in data.rglob("*"))
