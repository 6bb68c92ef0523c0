"""Sweeps are identified by what they run: a rerun never returns runs of another config.

Before, a sweep folder was ``runs/sweep-<preset>`` and "finished" meant only that
``summary.json`` existed, so a rerun with other settings returned the earlier runs,
and a different grid rewrote ``results.csv`` without the earlier run folders.
"""

from __future__ import annotations

import csv
import re

import nnlab
from conftest import assert_one_line_error
from nnlab.config import load_config

SWEEP = ["sweep", "moons", "--grid", "optim.lr=1e-1", "--seeds", "2", "--set", "data.n_samples=200"]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_rerun_with_another_config_is_refused_in_one_line_then_rerun_retrains(cli, tmp_path):
    assert cli(*SWEEP, "--set", "train.epochs=3", "--out", "X").returncode == 0
    refused = cli(*SWEEP, "--set", "train.epochs=4", "--out", "X")
    assert_one_line_error(
        refused, "X/optim.lr=0.1__seed=0", "train.epochs=3", "asks 4", "--rerun", "--out"
    )
    assert {r["epochs"] for r in read_rows(tmp_path / "X" / "results.csv")} == {"3"}  # untouched
    proc = cli(*SWEEP, "--set", "train.epochs=4", "--out", "X", "--rerun")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "X" / "results.csv")
    assert len(rows) == 2 and {r["epochs"] for r in rows} == {"4"}
    assert len({r["config_hash"] for r in rows}) == 2  # the seed is part of the config
    # the same config again: skipped, not retrained
    again = cli(*SWEEP, "--set", "train.epochs=4", "--out", "X")
    assert again.returncode == 0 and "2 of 2 runs already finished" in again.stderr


def test_train_seeds_goes_through_the_same_check(cli, tmp_path):
    args = ["train", "moons", "--seeds", "2", "--set", "data.n_samples=200", "--out", "S"]
    assert cli(*args, "--set", "train.epochs=2").returncode == 0
    assert_one_line_error(cli(*args, "--set", "train.epochs=3"), "train.epochs=2", "asks 3")
    assert cli(*args, "--set", "train.epochs=3", "--rerun").returncode == 0
    assert {r["epochs"] for r in read_rows(tmp_path / "S" / "results.csv")} == {"3"}


def test_results_csv_lists_the_runs_of_an_earlier_grid(cli, tmp_path):
    tiny = ["--set", "train.epochs=2", "--set", "data.n_samples=200", "--out", "X"]
    assert cli("sweep", "moons", "--grid", "optim.lr=1e-1,1e-2", *tiny).returncode == 0
    assert cli("sweep", "moons", "--grid", "model.hidden=8", *tiny).returncode == 0
    rows = {r["run"]: r for r in read_rows(tmp_path / "X" / "results.csv")}
    assert set(rows) == {"optim.lr=0.1__seed=0", "optim.lr=0.01__seed=0", "model.hidden=8__seed=0"}
    # every swept key a column, each run's cells from its own config
    moons = load_config("moons")
    assert rows["optim.lr=0.1__seed=0"]["model.hidden"] == ",".join(map(str, moons.model.hidden))
    assert rows["model.hidden=8__seed=0"]["optim.lr"] == str(moons.optim.lr)
    assert rows["model.hidden=8__seed=0"]["model.hidden"] == "8"
    assert list(rows)[0] == "model.hidden=8__seed=0"  # this sweep's runs first
    assert len(nnlab.open_run(tmp_path / "X").rows) == 3


def test_default_sweep_folders_carry_a_timestamp(cli, tmp_path):
    tiny = ["--set", "train.epochs=2", "--set", "data.n_samples=200"]
    assert cli("sweep", "moons", *tiny).returncode == 0
    assert cli("sweep", "moons", *tiny, "--set", "train.epochs=3").returncode == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(names) == 2, names  # the second sweep did not touch the first's folder
    assert all(re.fullmatch(r"sweep-moons-\d{8}-\d{6}(-\d+)?", n) for n in names), names


def test_the_api_refuses_and_reruns_too(tmp_path):
    kw = {"seeds": 1, "out": tmp_path / "A"}
    nnlab.sweep("moons", {"optim.lr": [0.1]}, ["train.epochs=2", "data.n_samples=200"], **kw)
    try:
        nnlab.sweep("moons", {"optim.lr": [0.1]}, ["train.epochs=3", "data.n_samples=200"], **kw)
    except nnlab.RunError as exc:
        assert "train.epochs=2, this sweep asks 3" in str(exc)
    else:
        raise AssertionError("a rerun with another config was not refused")
    sweep = nnlab.sweep(
        "moons", {"optim.lr": [0.1]}, ["train.epochs=3", "data.n_samples=200"], rerun=True, **kw
    )
    assert [r["epochs"] for r in sweep.rows] == [3]


def test_config_identity_ignores_only_the_device():
    from nnlab.config import config_diff, config_hash

    cfg = load_config("moons")
    assert config_hash(cfg) == config_hash(cfg.replace({"train.device": "cpu"}))
    other = cfg.replace({"train.epochs": 7})
    assert config_hash(cfg) != config_hash(other) and len(config_hash(cfg)) == 12
    assert config_diff(cfg, other) == [("train.epochs", cfg.train.epochs, 7)]


def test_a_grid_of_seeds_is_the_seed_list(cli, tmp_path):
    """``--grid train.seed=...`` runs those seeds; before, the seed loop overrode them all to
    ``train.seed`` (the runs named seed=3 and seed=7 trained seed 0 twice)."""
    tiny = ["--set", "train.epochs=2", "--set", "data.n_samples=200"]
    proc = cli("sweep", "moons", "--grid", "train.seed=3,7", *tiny, "--out", "G")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "G" / "results.csv")
    assert sorted(r["run"] for r in rows) == ["seed=3", "seed=7"]
    assert sorted(r["seed"] for r in rows) == ["3", "7"]
    for seed in (3, 7):
        assert nnlab.open_run(tmp_path / "G" / f"seed={seed}").config.train.seed == seed
    # the same runs as --seed 3 gives for its run
    alone = cli("train", "moons", "--seed", "3", *tiny, "--out", "A")
    assert alone.returncode == 0, alone.stderr
    a, g = nnlab.open_run(tmp_path / "A"), nnlab.open_run(tmp_path / "G" / "seed=3")
    assert a.summary["final_test_acc"] == g.summary["final_test_acc"]
    # both ways of naming seeds at once, a seed twice, a seed out of range: one line, no folder
    for grid, extra, says in [
        ("train.seed=3,7", ["--seeds", "2"], "give one of them"),
        ("train.seed=3,3", [], "given twice"),
        ("train.seed=4294967295..4294967296", [], "0..4294967295"),
    ]:
        proc = cli("sweep", "moons", "--grid", grid, *extra, *tiny, "--out", "bad")
        assert_one_line_error(proc, says)
        assert not (tmp_path / "bad").exists()
