"""Everything read back follows a schema: checkpoints (torch and .npz), summary.json,
metrics.csv, the data cache's meta.json and arrays. A bad file is one line naming it and
what is wrong (exit 2 through the CLI); ``nnlab report`` skips and lists what it cannot
read and still writes the rest. Each bad file is crafted here from a hand-built run folder
(``test_report.fake_run``): no training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from nnlab.errors import DataError, RunError
from nnlab.runs import RunFolder, load_checkpoint, save_arrays, save_checkpoint
from nnlab.runs.files import RESUME_KEYS, check_checkpoint
from test_report import fake_run, fake_sweep


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)


# --------------------------------------------------------------------------- torch checkpoints


@pytest.mark.parametrize(
    "state, says",
    [
        ([1, 2, 3], "a list, expected a dict"),
        ({}, "no 'model' entry"),
        ({"model": [torch.zeros(1)]}, "'model' is a list"),
        ({"model": {}}, "'model' is a dict"),
        ({"model": {"w": 3}}, "'w' is a int, expected a tensor"),
        ({"model": {1: torch.zeros(1)}}, "expected a tensor"),
    ],
)
def test_checkpoint_that_is_not_a_model(tmp_path, state, says):
    path = tmp_path / "last.pt"
    save_checkpoint(path, state)
    with pytest.raises(RunError) as err:
        load_checkpoint(path)
    one_line(err, str(path), says)


def resumable() -> dict:
    """What resume reads: every RESUME_KEYS entry with a value of the right type."""
    return {
        "model": {"w": torch.zeros(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": None,
        "epoch": 2,
        "step": 10,
        "elapsed_s": 1.5,
        "best_test_acc": 0.5,
        "best_epoch": 1,
        "since_best": 0,
        "stop_reason": "",
        "row": {"epoch": 2.0, "test_acc": 0.5},
        "torch_rng": torch.get_rng_state(),
        "config": {"train": {}},
    }


def test_resume_needs_its_keys_with_their_types(tmp_path):
    path = tmp_path / "last.pt"
    assert set(resumable()) == {"model", *RESUME_KEYS}
    assert check_checkpoint(resumable(), path, need="resume")["epoch"] == 2
    for key in ("epoch", "optimizer", "torch_rng", "config"):
        state = resumable()
        del state[key]
        with pytest.raises(RunError) as err:
            check_checkpoint(state, path, need="resume")
        one_line(err, str(path), f"missing {key}")
    for key, value, says in [
        ("epoch", "2", "epoch is a str, expected int"),
        ("step", True, "step is a bool"),
        ("optimizer", [], "optimizer is a list"),
        ("torch_rng", [1, 2], "torch_rng is a list, expected Tensor"),
        ("row", {"test_acc": 0.5}, "row has no epoch"),
    ]:
        state = resumable() | {key: value}
        with pytest.raises(RunError) as err:
            check_checkpoint(state, path, need="resume")
        one_line(err, str(path), says)
    save_checkpoint(path, resumable() | {"epoch": None})
    with pytest.raises(RunError) as err:
        load_checkpoint(path, need="resume")
    one_line(err, "epoch is a None")


def test_a_folder_where_a_checkpoint_should_be(tmp_path):
    (tmp_path / "last.pt").mkdir()
    with pytest.raises(RunError) as err:
        load_checkpoint(tmp_path / "last.pt")
    one_line(err, str(tmp_path / "last.pt"), "is a folder, not a checkpoint file")


def test_resume_of_a_checkpoint_that_is_a_list_is_one_line(cli, tmp_path):
    run = fake_run(tmp_path / "r", seed=0)
    (run / "summary.json").unlink()
    save_checkpoint(run / "checkpoints" / "last.pt", [1, 2])
    assert_one_line_error(cli("resume", str(run)), str(run / "checkpoints" / "last.pt"), "a list")


def test_a_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    import nnlab

    run = fake_run(tmp_path / "r", seed=0)
    other = {"model": {"layers.0.weight": torch.zeros(3, 2), "extra.bias": torch.zeros(4)}}
    save_checkpoint(run / "checkpoints" / "last.pt", other)
    with pytest.raises(RunError) as err:
        _ = nnlab.open_run(run).model
    one_line(err, str(run / "checkpoints" / "last.pt"), "do not fit the model", "missing")


# --------------------------------------------------------------------------- NumPy checkpoints


def good_npz() -> dict:
    rng = np.random.default_rng(0)
    return {
        "W0": rng.normal(size=(2, 5)),
        "b0": np.zeros(5),
        "W1": rng.normal(size=(5, 2)),
        "b1": np.zeros(2),
        "activation": np.array("relu"),
    }


@pytest.mark.parametrize(
    "change, says",
    [
        ({"b1": None}, "missing array(s) b1"),
        ({"W0": None, "b0": None, "W1": None, "b1": None}, "no weight array W0"),
        ({"W1": np.zeros((5, 2, 1))}, "W1 must be 2-D"),
        ({"W1": np.zeros((4, 2))}, "W1 takes 4 inputs but W0 gives 5"),
        ({"b0": np.zeros(3)}, "b0 has 3 entries but W0 has 5 outputs"),
        ({"W0": np.zeros((2, 5), dtype=np.int64)}, "must be float arrays"),
        ({"activation": None}, "activation must be one of"),
        ({"activation": np.array("evil")}, "activation must be one of"),
    ],
)
def test_npz_checkpoint_schema(tmp_path, change, says):
    from nnlab.numpy_mlp.mlp import load_model

    path = tmp_path / "last.npz"
    arrays = {k: v for k, v in (good_npz() | change).items() if v is not None}
    save_arrays(path, arrays)
    with pytest.raises(RunError) as err:
        load_model(path)
    one_line(err, str(path), says)


def test_npz_checkpoint_round_trip(tmp_path):
    from nnlab.numpy_mlp.mlp import load_model

    save_arrays(tmp_path / "ok.npz", good_npz())
    model = load_model(tmp_path / "ok.npz")
    assert model.forward(np.zeros((3, 2))).shape == (3, 2)


# --------------------------------------------------------------------------- summary.json, metrics.csv


@pytest.mark.parametrize(
    "change, says",
    [
        ({"final_test_acc": "0.9"}, "final_test_acc must be"),
        ({"train_seconds": None}, "train_seconds must be"),
        ({"seed": "../../x"}, "seed must be an integer"),
        ({"status": "pwned"}, "status must be one of"),
        ({"preset": ["a"]}, "preset must be"),
        ({"final_test_acc": None, "best_test_acc": True}, "best_test_acc must be"),
    ],
)
def test_summary_schema(cli, tmp_path, change, says):
    run = fake_run(tmp_path / "r", seed=0)
    summary = json.loads((run / "summary.json").read_text()) | change
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunError) as err:
        _ = RunFolder(run).summary
    one_line(err, str(run / "summary.json"), says)
    assert_one_line_error(cli("report", str(run), "--out", "rep"), "summary.json", says)
    assert not (tmp_path / "rep" / "report.md").exists()


def test_summary_missing_a_key(tmp_path):
    run = fake_run(tmp_path / "r", seed=0)
    (run / "summary.json").write_text(json.dumps({"status": "completed", "final_test_acc": 0.5}))
    with pytest.raises(RunError) as err:
        _ = RunFolder(run).status
    one_line(err, str(run / "summary.json"), "missing key 'best_test_acc'")


def test_metrics_with_a_foreign_header(cli, tmp_path):
    run = fake_run(tmp_path / "r", seed=0)
    (run / "metrics.csv").write_text("epoch,acc\n1,0.5\n")
    with pytest.raises(RunError) as err:
        _ = RunFolder(run).metrics
    one_line(err, str(run / "metrics.csv"), "header should be epoch,step,train_loss")
    proc = cli("report", str(run), "--out", "rep")
    assert_one_line_error(proc, str(run / "metrics.csv"), "header should be")


# --------------------------------------------------------------------------- report: skip and list


def test_report_skips_and_lists_what_it_cannot_read(cli, tmp_path):
    sweep = fake_sweep(tmp_path / "s", {"optim.lr=0.1__seed=0": True, "optim.lr=0.2__seed=0": True})
    (sweep / "optim.lr=0.2__seed=0" / "summary.json").write_text('{"final_test_acc": "x"}')
    lone = fake_run(tmp_path / "lone", seed=1)
    (lone / "metrics.csv").write_text("foreign,header\n1,2\n")
    proc = cli("report", str(sweep), str(lone), "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if "skipped: " in line]
    assert len(skipped) == 2, proc.stderr
    assert any("optim.lr=0.2__seed=0" in s and "summary.json" in s for s in skipped)
    assert any(str(lone / "metrics.csv") in s for s in skipped)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "skipped: " in md and "optim.lr=0.2__seed=0" in md


# --------------------------------------------------------------------------- the data cache


def fake_cache(root, n=4, classes=10):
    from nnlab.data.cifar10 import CACHE_NAME, write_cache

    arrays = {
        "x_train": np.zeros((n, 3, 32, 32), np.uint8),
        "y_train": np.arange(n, dtype=np.int64) % classes,
        "x_test": np.zeros((n, 3, 32, 32), np.uint8),
        "y_test": np.arange(n, dtype=np.int64) % classes,
    }
    meta = {"n_train": n, "n_test": n, "mean": [0.5] * 3, "std": [0.25] * 3, "source": "x"}
    write_cache(root / CACHE_NAME, arrays, meta)
    return root / CACHE_NAME


@pytest.mark.parametrize(
    "file, content, says",
    [
        ("meta.json", b"{not json", "not valid JSON"),
        ("meta.json", b"[1, 2]", "not a JSON object"),
        ("meta.json", b'{"n_train": "4"}', "n_train must be a count"),
        ("y_train.npy", np.array([0, 1, 2, 10]), "labels must be in 0..9, found 0..10"),
        ("y_test.npy", np.array([-1, 1, 2, 3]), "labels must be in 0..9"),
        ("x_train.npy", np.zeros((4, 32, 32), np.uint8), "expected (N, 3, H, W) uint8"),
        ("y_train.npy", np.zeros((4, 2), np.int64), "expected (N,) integer labels"),
        ("x_test.npy", np.zeros((3, 3, 32, 32), np.uint8), "counts differ"),
    ],
)
def test_data_cache_schema(cli, tmp_path, file, content, says):
    from nnlab.data.cifar10 import read_cache

    folder = fake_cache(tmp_path / "data")
    assert read_cache(folder) is not None
    if isinstance(content, bytes):
        (folder / file).write_bytes(content)
    else:
        np.save(folder / file, content)
    with pytest.raises(DataError) as err:
        read_cache(folder)
    one_line(err, str(folder), says, "nnlab data cifar10 --archive")
    if file == "meta.json":
        proc = cli("data", "info", "--dir", str(tmp_path / "data"))
        assert_one_line_error(proc, str(folder / "meta.json"), says)


def test_real_checkpoints_pass_their_schema(tmp_path):
    """What the engine writes (mid-run last.pt, best.pt, a NumPy run's .npz) reads back."""
    from nnlab.config import load_config
    from nnlab.engine.run import run_training
    from nnlab.numpy_mlp.mlp import load_model

    fast = {"train.epochs": 2, "train.device": "cpu", "data.n_samples": 200}
    run_training(load_config("moons", fast), tmp_path / "t", progress="off")
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(tmp_path / "t" / "checkpoints" / name, need="resume")
        assert state["epoch"] >= 1
    numpy_cfg = load_config("moons", {**fast, "model.backend": "numpy"})
    run_training(numpy_cfg, tmp_path / "n", progress="off")
    assert load_model(tmp_path / "n" / "checkpoints" / "last.npz").sizes[0] == 2
