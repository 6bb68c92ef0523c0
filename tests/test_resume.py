"""Resume: a killed run continues from its last checkpoint to the same results, bit for bit.

The kill test forks real training processes (the CLI's ``main``) and SIGKILLs
them at random moments, including mid-checkpoint, then resumes until done.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sys

import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.engine.run import run_training
from nnlab.runs import load_checkpoint

SETTINGS = {
    "train.epochs": 60,
    "train.eval_every": 1,
    "train.device": "cpu",
    "model.dropout": 0.1,
    "data.n_samples": 400,
    "schedule.name": "cosine",
    # checkpoints every 20 ms, also mid-epoch: kills land on both kinds
    "train.checkpoint_every_s": 0.02,
    "train.batch_size": 16,
}
SET_ARGS = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")]


def _rows(run):
    """metrics.csv without the wall-clock column."""
    return [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]


def _weights(run):
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _child(args, cwd):
    os.chdir(cwd)
    # its output goes to a log that a failure shows (the process ends here)
    sys.stdout = sys.stderr = open(os.path.join(cwd, "child.log"), "w")  # noqa: SIM115
    from nnlab.cli import main

    os._exit(main(args))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run_training(load_config("moons", SETTINGS), out, progress="off")
    return out


def test_kill_and_resume_matches_uninterrupted(tmp_path, reference):
    """SIGKILL real training processes at random moments (20 times at least), resume each time.

    Every round ends with the uninterrupted run's metrics and weights, bit for bit.
    """
    ctx = mp.get_context("fork")
    rng = random.Random(1234)
    kills = mid_write = rounds = 0
    while kills < 20:
        rounds += 1
        out = tmp_path / f"run{rounds}"
        while not (out / "summary.json").exists():  # a kill can land after the run finished
            if (out / "config.toml").exists():
                args = ["resume", str(out), "--progress", "off"]
            else:
                args = ["train", "moons", *SET_ARGS, "--out", str(out), "--progress", "off"]
            proc = ctx.Process(target=_child, args=(args, str(tmp_path)))
            proc.start()
            proc.join(rng.uniform(0.05, 0.5) if kills < 20 else 300)
            if proc.exitcode is not None:
                assert proc.exitcode == 0, (args, (tmp_path / "child.log").read_text()[-3000:])
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            kills += 1
            mid_write += any(out.glob(".*.tmp")) or any(out.glob("checkpoints/.*.tmp"))
            _check_not_torn(out)
        assert _rows(out) == _rows(reference)
        ours, ref = _weights(out), _weights(reference)
        assert all(torch.equal(ours[k], ref[k]) for k in ref)
        assert not list(out.glob(".*.tmp")) and not list(out.glob("checkpoints/.*.tmp"))
    print(
        f"kill test: {kills} kills over {rounds} runs, {mid_write} during a file write; all resumed to identical results"
    )


def _check_not_torn(out):
    """Every checkpoint loads, and metrics.csv holds the row of the checkpoint's last evaluation
    (rows past it may follow: resume drops and recomputes them)."""
    last = out / "checkpoints" / "last.pt"
    if not last.exists():
        return
    row = load_checkpoint(last)["row"]
    complete_rows = (out / "metrics.csv").read_text().split("\n")[1:-1]
    if row is not None:
        assert int(row["epoch"]) in [int(r.split(",")[0]) for r in complete_rows]
    if (out / "checkpoints" / "best.pt").exists():
        load_checkpoint(out / "checkpoints" / "best.pt")


def test_resume_repairs_a_torn_metrics_line(tmp_path, reference, cli, monkeypatch):
    """Crash after epoch 44 with last.pt from epoch 40 and a torn last row: resume drops rows 41-44.

    This run checkpoints at every evaluation (so the crash lands where the test says);
    when checkpoints are written changes no result, so it still ends as the reference.
    """
    import nnlab.engine.sinks

    real_save = nnlab.engine.sinks.save_checkpoint

    def crashing_save(path, state):
        if state["epoch"] <= 40:
            real_save(path, state)
        elif state["epoch"] == 44:
            raise KeyboardInterrupt  # the "crash": rows up to 44 are in metrics.csv

    monkeypatch.setattr(nnlab.engine.sinks, "save_checkpoint", crashing_save)
    out = tmp_path / "run"
    every_evaluation = {**SETTINGS, "train.checkpoint_every_s": 0}  # no timing in this test
    with pytest.raises(KeyboardInterrupt):
        run_training(load_config("moons", every_evaluation), out, progress="off")
    monkeypatch.undo()
    text = (out / "metrics.csv").read_text()
    assert text.splitlines()[-1].startswith("44,")
    # and a torn line, as a kill mid-append leaves
    (out / "metrics.csv").write_text(text + "45,1125,0.12")
    proc = cli("resume", str(out), "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    assert _rows(out) == _rows(reference)


def test_resume_bad_inputs(tmp_path, reference, cli):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("resume", str(tmp_path / "empty")), "not an nnlab run folder")
    assert_one_line_error(cli("resume", str(reference)), "finished")
    assert_one_line_error(cli("train", "--resume", str(reference)), "finished")
    # a run folder whose checkpoint comes from a different model
    other = tmp_path / "other"
    run_training(load_config("moons", {**SETTINGS, "train.epochs": 2}), other, progress="off")
    (other / "summary.json").unlink()
    mlp = tmp_path / "mlp"
    run_training(
        load_config("moons", {**SETTINGS, "train.epochs": 2, "model.hidden": [5]}),
        mlp,
        progress="off",
    )
    (other / "checkpoints" / "last.pt").write_bytes((mlp / "checkpoints" / "last.pt").read_bytes())
    assert_one_line_error(cli("resume", str(other)), "not written by this run's config")
    # asking to resume with another config
    (mlp / "summary.json").unlink()
    assert_one_line_error(
        cli("train", "moons", *SET_ARGS, "--resume", str(mlp)), "different config"
    )
    assert_one_line_error(cli("train", "--resume", str(mlp), "--seeds", "2"), "--resume")
