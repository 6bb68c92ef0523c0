"""backend=numpy through `nnlab train`/`nnlab sweep`, and seed-stacked training equal to lone runs.

Proves: the numpy backend writes the torch backend's run folder; a stack of
seeds (either backend) gives each seed what its lone run gives, to float
rounding; the numpy-vs-torch sweep writes results.csv, summary.md and the
decision-boundary figures; bad input is a one-line error with exit code 2.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.engine.run import run_training
from nnlab.numpy_mlp.fit import fit_stacked, to_arrays
from nnlab.numpy_mlp.mlp import load_model
from nnlab.runs import METRIC_COLUMNS, load_checkpoint, read_metrics

FAST = ["train.epochs=20", "train.eval_every=5", "train.device=cpu"]


def _cfg(backend: str, seed: int = 0, extra=()):
    return load_config(
        "numpy-vs-torch", [*FAST, f"model.backend={backend}", f"train.seed={seed}", *extra]
    )


def test_numpy_backend_writes_the_torch_run_folder(tmp_path):
    numpy_summary = run_training(_cfg("numpy"), tmp_path / "np", progress="off")
    torch_summary = run_training(_cfg("torch"), tmp_path / "pt", progress="off")
    run = tmp_path / "np"
    for name in (
        "config.toml",
        "metrics.csv",
        "summary.json",
        "curves.png",
        "checkpoints/last.npz",
        "checkpoints/best.npz",
    ):
        assert (run / name).is_file(), name
    assert (run / "metrics.csv").read_text().splitlines()[0].split(",") == METRIC_COLUMNS
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [5, 10, 15, 20] and rows[-1]["train_loss"] < rows[0][
        "train_loss"
    ]
    assert set(torch_summary) - set(numpy_summary) == set()  # every key the torch backend writes
    assert (
        numpy_summary["final_test_acc"] == pytest.approx(rows[-1]["test_acc"], abs=1e-6)
        and numpy_summary["final_test_acc"] > 0.85
    )
    # the saved weights reproduce the final accuracy (np.load with allow_pickle=False)
    data = load_data(_cfg("numpy").data, 0)
    model = load_model(run / "checkpoints" / "last.npz")
    acc = (model.forward(data.x_test.numpy()).argmax(1) == data.y_test.numpy()).mean()
    assert acc == pytest.approx(numpy_summary["final_test_acc"], abs=1e-6)
    assert (
        int(np.load(run / "checkpoints" / "best.npz", allow_pickle=False)["epoch"])
        == numpy_summary["best_epoch"]
    )


def test_numpy_stack_equals_lone_runs():
    # seeds 0, 1 on moons and seed 2 on circles: one stack (same shapes), three different runs
    cfgs = [
        _cfg("numpy", s, ["schedule.name=cosine", "optim.weight_decay=1e-3", f"data.name={d}"])
        for s, d in ((0, "moons"), (1, "moons"), (2, "circles"))
    ]
    data = [to_arrays(load_data(c.data, c.train.seed)) for c in cfgs]
    stacked = fit_stacked(cfgs, data)
    for cfg, d, together in zip(cfgs, data, stacked, strict=True):
        alone = fit_stacked([cfg], [d])[0]
        for a, b in zip(alone.history, together.history, strict=True):
            assert a.keys() == b.keys()
            np.testing.assert_allclose(
                [a[k] for k in METRIC_COLUMNS[:-1]],
                [b[k] for k in METRIC_COLUMNS[:-1]],
                rtol=1e-5,
                atol=1e-6,
            )
        for k in alone.last:
            np.testing.assert_allclose(alone.last[k], together.last[k], rtol=1e-5, atol=1e-6)


def test_torch_stack_equals_lone_runs(tmp_path):
    from nnlab.engine.run import train_group

    cfgs = [
        _cfg(
            "torch",
            s,
            ["schedule.name=cosine", "optim.name=adam", "optim.lr=0.01", f"data.name={d}"],
        )
        for s, d in ((0, "moons"), (1, "moons"), (2, "circles"))
    ]
    group = [(f"s{c.train.seed}", c) for c in cfgs]
    summaries = dict(train_group(group, str(tmp_path / "stack"), threads=0))
    for cfg in cfgs:
        name = f"s{cfg.train.seed}"
        alone = run_training(cfg, tmp_path / "alone" / name, progress="off")
        together = summaries[name]
        assert together["stacked"] == 3 and together["final_test_acc"] == pytest.approx(
            alone["final_test_acc"], abs=1e-6
        )
        a_rows, b_rows = (
            read_metrics(tmp_path / d / name / "metrics.csv") for d in ("alone", "stack")
        )
        for a, b in zip(a_rows, b_rows, strict=True):
            np.testing.assert_allclose(
                [a[k] for k in METRIC_COLUMNS[:-1]],
                [b[k] for k in METRIC_COLUMNS[:-1]],
                rtol=1e-4,
                atol=1e-5,
            )
        a_ckpt, b_ckpt = (
            load_checkpoint(tmp_path / d / name / "checkpoints" / "last.pt")
            for d in ("alone", "stack")
        )
        for k, v in a_ckpt["model"].items():
            torch.testing.assert_close(b_ckpt["model"][k], v, rtol=1e-4, atol=1e-5)
        assert a_ckpt["optimizer"]["state"].keys() == b_ckpt["optimizer"]["state"].keys()


SWEEP = ["sweep", "numpy-vs-torch", "--seeds", "2", "--grid", "data.name=moons,blobs"]
SWEEP += ["--set", "train.epochs=20", "--out", "sw"]


def test_numpy_vs_torch_sweep(cli, tmp_path):
    proc = cli(*SWEEP)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "sw"
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {
        "data.name",
        "model.backend",
        "seed",
        "final_test_acc",
        "train_seconds",
    } <= set(rows[0])
    assert {(r["data.name"], r["model.backend"]) for r in rows} == {
        (d, b) for d in ("moons", "blobs") for b in ("numpy", "torch")
    }
    for r in rows:
        # seeds trained together
        assert json.loads((out / r["run"] / "summary.json").read_text())["stacked"] == 2
    table = (out / "summary.md").read_text()
    assert "| moons | numpy |" in table and "+-" in table
    assert (out / "boundaries-moons.png").is_file() and (out / "boundaries-blobs.png").is_file()
    again = cli(*SWEEP)
    assert again.returncode == 0 and "8 of 8 runs already finished" in again.stderr


def test_nan_features_are_a_one_line_error(cli, tmp_path, monkeypatch):
    import nnlab.engine.run

    real = nnlab.engine.run.load_data

    def poisoned(cfg, seed):
        bundle = real(cfg, seed)
        bundle.x_train[3, 1] = float("nan")
        return bundle

    monkeypatch.setattr(nnlab.engine.run, "load_data", poisoned)
    proc = cli("train", "moons", "--set", "model.backend=numpy", "--out", "bad")
    assert_one_line_error(proc, "x_train", "NaN")
    assert not (tmp_path / "bad").exists()  # nothing half-written


@pytest.mark.parametrize(
    "setting, needle",
    [("model.activation=gelu", "model.activation"), ("schedule.name=onecycle", "schedule.name")],
)
def test_unsupported_numpy_settings_are_one_line_errors(cli, setting, needle):
    assert_one_line_error(
        cli("train", "moons", "--set", "model.backend=numpy", "--set", setting), needle, "numpy"
    )


def test_numpy_divergence_is_recorded_like_torch(cli, tmp_path):
    proc = cli(
        "train",
        "numpy-vs-torch",
        "--set",
        "model.backend=numpy",
        "--set",
        "optim.lr=1e30",
        "--set",
        "model.activation=relu",
        "--set",
        "train.epochs=10",
        "--out",
        "div",
    )
    assert (
        proc.returncode == 1
        and "loss became" in proc.stderr
        and len(proc.stderr.strip().splitlines()) == 1
    )
    assert json.loads((tmp_path / "div" / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    "setting", [None, "train.ema=0.9", "train.init_from=somewhere", "train.patience=3"]
)
def test_only_settings_the_stack_implements_are_stacked(setting):
    """A stacked run must train exactly like a lone one: settings only fit has keep runs lone."""
    from nnlab.engine.plan import stack_refusal

    cfg = load_config("seed-moons", ["train.device=cpu", *([setting] if setting else [])])
    assert (stack_refusal(cfg) is None) is (setting is None)
