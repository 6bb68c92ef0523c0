"""The Python API (nnlab/api.py): the same engine and checks as the CLI, returning Run and Sweep objects.

Also TensorBoard logging (``train.tensorboard``): event files when the package is
installed, and a one-line ConfigError, with nothing written, when it is not.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import nnlab
from conftest import REPO, assert_one_line_error
from nnlab import ConfigError, Run, RunError, Sweep

QUICK = {
    "train": {"epochs": 4, "eval_every": 2}
}  # two evaluations of the moons MLP: well under a second


def test_overrides_in_every_form_give_the_same_config():
    base = nnlab.load_config("moons")
    a = nnlab.load_config("moons", {"optim.lr": 3e-3, "model.hidden": [8, 8]})
    b = nnlab.load_config("moons", ["optim.lr=3e-3", "model.hidden=8,8"])
    c = nnlab.load_config("moons", optim={"lr": 3e-3}, model={"hidden": [8, 8]})
    # a Config as the source
    d = nnlab.load_config(base, optim={"lr": 3e-3}, model={"hidden": [8, 8]})
    assert a == b == c == d
    assert a.optim.lr == 3e-3 and a.model.hidden == [8, 8] and base.optim.lr != 3e-3


def test_train_returns_a_run_whose_parts_agree(tmp_path):
    run = nnlab.train("moons", seed=3, out=tmp_path / "r", progress="off", **QUICK)
    assert isinstance(run, Run) and run.path == tmp_path / "r" and run.finished
    rows = run.rows
    assert [r["epoch"] for r in rows] == [2, 4]
    assert run.summary["seed"] == 3 and run.config.train.seed == 3 and run.config.name == "moons"
    assert run.summary["final_test_acc"] == pytest.approx(rows[-1]["test_acc"], abs=1e-6)
    # The model rebuilt from config.toml + checkpoint scores what the run reported.
    model = run.model
    assert (
        not model.training and sum(p.numel() for p in model.parameters()) == run.summary["n_params"]
    )
    assert run.evaluate()["acc"] == pytest.approx(run.summary["final_test_acc"], abs=1e-9)
    fig = run.plot_curves(tmp_path / "c.png")
    assert len(fig.axes) == 2 and (tmp_path / "c.png").stat().st_size > 1000
    again = nnlab.open_run(tmp_path / "r")  # from disk, as a later session would
    assert isinstance(again, Run) and again.summary == run.summary
    assert "moons" in repr(again) and "final_test_acc" in repr(again)


def test_model_is_the_one_final_test_acc_measured(tmp_path):
    # With early stopping and restore_best the run ends on best.pt: .model must load that one.
    run = nnlab.train(
        "moons",
        seed=0,
        out=tmp_path / "r",
        progress="off",
        optim={"lr": 0.3},
        train={"epochs": 12, "patience": 1, "restore_best": True},
    )
    assert run.evaluate()["acc"] == pytest.approx(run.summary["final_test_acc"], abs=1e-9)
    assert run.evaluate("best")["acc"] == pytest.approx(run.summary["best_test_acc"], abs=1e-9)


def test_numpy_backend_run_gives_its_mlp_from_the_npz_checkpoint(tmp_path):
    run = nnlab.train(
        "moons", out=tmp_path / "r", progress="off", model={"backend": "numpy"}, **QUICK
    )
    assert run.folder.checkpoint_path().name == "last.npz" and hasattr(run.model, "forward")
    assert run.evaluate()["acc"] == pytest.approx(run.summary["final_test_acc"], abs=1e-6)
    assert run.folder.boundary()["pred"].shape == (120, 120)  # written by the engine (2-D data)


def test_seeds_give_a_sweep_with_mean_std_n(tmp_path):
    sw = nnlab.train("moons", seeds=[0, 1], out=tmp_path / "s", **QUICK)
    assert isinstance(sw, Sweep) and sw.keys == []
    accs = [r["final_test_acc"] for r in sw.rows]
    assert [r["seed"] for r in sw.rows] == [0, 1] and len(sw.runs) == 2
    (stats,) = sw.stats()
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(sum(accs) / 2)
    assert stats["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert [r.summary["final_test_acc"] for r in sw.runs] == pytest.approx(accs)
    assert isinstance(nnlab.open_run(tmp_path / "s"), Sweep)
    assert "n=2" in sw.format_summary()


def test_sweep_over_a_grid(tmp_path):
    sw = nnlab.sweep(
        "moons",
        {"optim.lr": [1e-3, 1e-2], "train.batch_size": "32,64"},
        out=tmp_path / "g",
        **QUICK,
    )
    assert sw.keys == ["optim.lr", "train.batch_size"]
    assert sorted((r["optim.lr"], r["train.batch_size"]) for r in sw.rows) == [
        (1e-3, 32),
        (1e-3, 64),
        (1e-2, 32),
        (1e-2, 64),
    ]
    assert len(sw.stats()) == 4 and all(s["n"] == 1 for s in sw.stats())
    # Rerunning into the same folder skips the finished runs: same rows, no retraining.
    before = {r["run"]: r["train_seconds"] for r in sw.rows}
    again = nnlab.sweep(
        "moons",
        {"optim.lr": [1e-3, 1e-2], "train.batch_size": "32,64"},
        out=tmp_path / "g",
        **QUICK,
    )
    assert {r["run"]: r["train_seconds"] for r in again.rows} == before


def test_metrics_is_a_dataframe_only_when_pandas_is_there(tmp_path, monkeypatch):
    run = nnlab.train("moons", out=tmp_path / "r", progress="off", **QUICK)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    assert run.metrics == run.rows and isinstance(run.metrics, list)
    fake = types.ModuleType("pandas")
    fake.DataFrame = lambda rows: ("frame", rows)
    monkeypatch.setitem(sys.modules, "pandas", fake)
    assert run.metrics == ("frame", run.rows)


def test_bad_input_raises_configerror_with_the_clis_text(cli, tmp_path):
    with pytest.raises(ConfigError) as bad_key:
        nnlab.train("moons", {"optim.lrr": 1e-3}, out=tmp_path / "x")
    assert isinstance(bad_key.value, ValueError)
    proc = cli("train", "moons", "--set", "optim.lrr=1e-3", "--out", str(tmp_path / "y"))
    assert_one_line_error(proc, "optim.lrr")
    assert proc.stderr.strip() == f"nnlab: error: {bad_key.value}"
    with pytest.raises(ConfigError, match=r"train\.epochs: must be >= 1"):
        nnlab.train("moons", train={"epochs": 0}, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown section 'optimizer'; sections are data, model"):
        nnlab.load_config("moons", optimizer={"lr": 1e-3})
    with pytest.raises(ConfigError, match="seeds"):
        nnlab.train("moons", seeds=0, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        nnlab.sweep("moons", {"optim.lrr": [1, 2]}, out=tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written by any of them


def test_open_run_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(RunError, match="not an nnlab run folder"):
        nnlab.open_run(tmp_path)
    (tmp_path / "config.toml").write_text("[train]\nepochs = 1\n")
    with pytest.raises(RunError, match="has not finished"):
        _ = nnlab.open_run(tmp_path).summary


def test_report_writes_html(tmp_path):
    run = nnlab.train("moons", out=tmp_path / "r", progress="off", **QUICK)
    html = nnlab.report(run.path, out=tmp_path / "rep")
    assert html == tmp_path / "rep" / "report.html" and html.stat().st_size > 0
    assert (tmp_path / "rep" / "report.md").exists()


def test_api_names_are_plain_functions():
    # No module shares a name with an API function, so nnlab.train & co. are the API's own.
    from nnlab import api

    assert nnlab.train is api.train and nnlab.sweep is api.sweep and nnlab.report is api.report
    assert "Run" in nnlab.train.__doc__ and "grid" in nnlab.sweep.__doc__


def test_import_nnlab_loads_no_heavy_library():
    code = (
        "import sys, nnlab; heavy = ('torch', 'matplotlib', 'sklearn', 'numpy', 'tensorboard');"
        "print(sorted(m for m in heavy if m in sys.modules)); nnlab.load_config('moons')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_writes_scalars_config_and_graph(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = nnlab.train(
        "moons",
        out=tmp_path / "r",
        progress="off",
        train={"epochs": 4, "eval_every": 2, "tensorboard": True},
    )
    events = list(run.path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(run.path))
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/train", "loss/test", "accuracy/train", "accuracy/test", "lr"} <= set(
        tags["scalars"]
    )
    test_acc = [(e.step, e.value) for e in acc.Scalars("accuracy/test")]
    assert test_acc == [(r["epoch"], pytest.approx(r["test_acc"], abs=1e-6)) for r in run.rows]
    assert tags["graph"] and "config/text_summary" in tags["tensors"]


def test_tensorboard_numpy_backend_replays_its_rows(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = nnlab.train(
        "moons",
        out=tmp_path / "r",
        progress="off",
        model={"backend": "numpy", "hidden": [8]},
        train={"epochs": 4, "eval_every": 2, "tensorboard": True},
    )
    acc = EventAccumulator(str(run.path))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy/test")] == [2, 4]


def test_missing_tensorboard_is_one_line_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec -> None
    proc = cli("train", "moons", "--set", "train.tensorboard=true", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "train.tensorboard", "pip install 'nnlab[tensorboard]'")
    proc = cli(
        "sweep",
        "moons",
        "--set",
        "train.tensorboard=true",
        "--seeds",
        "2",
        "--out",
        str(tmp_path / "s"),
    )
    assert_one_line_error(proc, "train.tensorboard")
    with pytest.raises(ConfigError, match="tensorboard"):
        nnlab.train("moons", out=tmp_path / "a", train={"tensorboard": True})
    assert list(tmp_path.iterdir()) == []


def test_optional_packages_are_looked_up_without_importing(monkeypatch):
    from nnlab.errors import ConfigError
    from nnlab.extras import installed, require

    assert installed("numpy") and not installed("nnlab_no_such_package")
    monkeypatch.setitem(sys.modules, "numpy", None)  # a half-removed install: missing, no crash
    assert not installed("numpy")
    monkeypatch.delitem(sys.modules, "json", raising=False)
    assert installed("json") and "json" not in sys.modules  # found, not imported
    with pytest.raises(ConfigError, match=r"^pip install it$"):
        require("nnlab_no_such_package", "pip install it")
