"""End-to-end CLI runs on tiny settings, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json

from conftest import assert_one_line_error, run_cli

TINY = ["--set", "train.epochs=4", "--set", "train.eval_every=2", "--set", "data.n_samples=200"]


def test_presets_lists_each_with_a_line(cli):
    proc = cli("presets")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("seed-moons ") for line in lines) and any(
        line.startswith("moons ") for line in lines
    )


def test_train_writes_a_run_folder(cli, tmp_path):
    proc = cli("train", "seed-moons", *TINY, "--out", "r", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "final_test_acc" in proc.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["epochs"] == 4 and summary["device"] == "cpu"


def test_train_from_a_run_config_keeps_the_preset_name(cli, tmp_path):
    assert cli("train", "seed-moons", *TINY, "--out", "r").returncode == 0
    proc = cli("train", "r/config.toml", "--out", "again")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["preset"] == "seed-moons" and summary["epochs"] == 4


def test_train_default_out_is_under_runs(cli, tmp_path):
    proc = cli("train", "moons", *TINY)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("moons-") and (run / "summary.json").exists()


def test_train_seeds_writes_results_and_mean_std(cli, tmp_path):
    proc = cli("train", "moons", *TINY, "--seeds", "3", "--seed", "5", "--out", "s")
    assert proc.returncode == 0, proc.stderr
    assert "+-" in proc.stdout and "n=3" in proc.stdout
    with open(tmp_path / "s" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["5", "6", "7"]
    assert {"run", "seed", "final_test_acc", "best_test_acc", "train_seconds"} <= set(rows[0])
    # rerunning skips the finished runs
    again = cli("train", "moons", *TINY, "--seeds", "3", "--seed", "5", "--out", "s")
    assert again.returncode == 0 and "3 of 3 runs already finished" in again.stderr


def test_sweep_grid(cli, tmp_path):
    proc = cli(
        "sweep",
        "moons",
        *TINY,
        "--grid",
        "model.hidden=8,16",
        "--grid",
        "train.epochs=2..3",
        "--out",
        "g",
    )
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "g" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["model.hidden"] for r in rows} == {"8", "16"}
    assert {r["train.epochs"] for r in rows} == {"2", "3"}


def test_python_dash_m_is_the_cli(tmp_path):
    # a real process: the entry point, exit codes and stderr as a user sees them
    ok = run_cli("train", "seed-moons", *TINY, "--out", "r", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r" / "summary.json").exists()
    assert_one_line_error(
        run_cli("train", "moons", "--set", "optim.lr=0", cwd=tmp_path), "optim.lr"
    )
    assert run_cli("--help", cwd=tmp_path).returncode == 0


def _nothing_written(tmp_path):
    return not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()


def test_bad_inputs_give_one_line_and_exit_2(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bad.toml").write_text("[model\n")
    (tmp_path / "binary.toml").write_bytes(b"\x00\xff\xfe\x80")
    (tmp_path / "empty.toml").write_text("")
    cases = [
        (["train", "no-such-preset"], "unknown preset"),
        (["train", "missing.toml"], "does not exist"),
        (["train", "bad.toml"], "malformed TOML"),
        (["train", "binary.toml"], "binary.toml"),
        (["train", "moons", "--set", "optim.lr=-1"], "optim.lr"),
        (["train", "moons", "--set", "model.hidden=20,abc"], "model.hidden"),
        (["train", "moons", "--set", "bogus"], "bogus"),
        (["train", "moons", "--set", "train.wat=1"], "train.wat"),
        (["train", "moons", "--device", "tpu"], "tpu"),
        (["train", "moons", "--device", "cuda"], "CUDA is not available"),
        (["train", "moons", "--out", "afile"], "not a folder"),
        (["train", "moons", "--seeds", "0"], "--seeds"),
        (["sweep", "moons", "--grid", "optim.lr"], "--grid"),
        (["sweep", "moons", "--grid", "optim.nope=1,2"], "optim.nope"),
        (["sweep", "moons", "--grid", "optim.lr=1,abc", "--out", "o"], "optim.lr"),
        (["frobnicate"], "invalid choice"),
        (["train"], "PRESET"),
    ]
    for args, needle in cases:
        proc = cli(*args)
        assert_one_line_error(proc, needle)
        assert _nothing_written(tmp_path), args
    # an empty file is a valid (all-defaults) config: it trains
    assert cli("train", "empty.toml", *TINY, "--out", "e").returncode == 0
