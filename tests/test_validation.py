"""data.val_fraction: a validation split held out of the training set, and model selection on it.

With a validation split, everything that selects (best epoch, best.pt, train.patience,
restore_best, target_acc) looks at val_acc; the test set is only reported. Before
this, selection looked at test_acc, so with patience and restore_best the final test
accuracy was the best test accuracy by construction.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.engine.run import run_training, train_group
from nnlab.runs import load_checkpoint, read_metrics

SELECT = [
    "data.val_fraction=0.2",
    "train.patience=2",
    "train.restore_best=true",
    "train.epochs=60",
    "train.eval_every=2",
    "train.device=cpu",
]


def test_split_is_held_out_of_training_and_reproducible():
    cfg = load_config("moons", ["data.val_fraction=0.25"]).data
    a, b, plain = load_data(cfg, 3), load_data(cfg, 3), load_data(load_config("moons").data, 3)
    assert len(a.y_val) == 200 and len(a.y_train) == 600 and len(plain.y_train) == 800
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_train, b.x_train)
    # every validation example comes from the training set, none from the test set
    train_rows = {tuple(r) for r in plain.x_train.tolist()}
    assert all(tuple(r) in train_rows for r in a.x_val.tolist())
    assert torch.equal(a.x_test, plain.x_test)


def test_selection_looks_at_validation_not_test(tmp_path):
    summary = run_training(load_config("moons", SELECT), tmp_path / "r", progress="off")
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert {"val_loss", "val_acc"} <= set(rows[0])
    best_by_val = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert summary["selected_on"] == "val_acc"
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (640, 160, 200)
    assert summary["best_epoch"] == best_by_val["epoch"]
    assert summary["best_val_acc"] == pytest.approx(best_by_val["val_acc"], abs=1e-6)
    # the run ends on the best-by-validation checkpoint: its test accuracy, not the best one
    assert summary["final_test_acc"] == pytest.approx(best_by_val["test_acc"], abs=1e-6)
    assert "no better val_acc" in summary["stop_reason"]
    best = load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")
    assert best["epoch"] == best_by_val["epoch"] and best["best_val_acc"] == summary["best_val_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in rows)  # informational


def test_target_accuracy_is_checked_on_validation(tmp_path):
    overrides = ["data.val_fraction=0.2", "train.target_acc=0.9", "train.epochs=50"]
    summary = run_training(load_config("moons", overrides), tmp_path / "r", progress="off")
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert rows[-1]["val_acc"] >= 0.9 and all(r["val_acc"] < 0.9 for r in rows[:-1])
    assert "(val_acc)" in summary["stop_reason"]


def test_without_a_split_nothing_changes(tmp_path):
    summary = run_training(load_config("moons", ["train.epochs=4"]), tmp_path / "r", progress="off")
    header = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0]
    assert "val_acc" not in header
    assert summary["selected_on"] == "test_acc" and summary["best_val_acc"] is None


def test_stacked_seeds_and_numpy_select_on_validation_too(tmp_path):
    cfgs = [
        load_config("moons", [*SELECT[:1], "train.epochs=6", f"train.seed={s}"]) for s in (0, 1)
    ]
    stacked = dict(train_group([(f"s{c.train.seed}", c) for c in cfgs], str(tmp_path / "st"), 0))
    for c in cfgs:
        alone = run_training(c, tmp_path / "alone" / f"s{c.train.seed}", progress="off")
        together = stacked[f"s{c.train.seed}"]
        assert together["stacked"] == 2 and together["selected_on"] == "val_acc"
        assert together["best_val_acc"] == pytest.approx(alone["best_val_acc"], abs=1e-6)
    numpy_cfg = load_config("seed-moons", ["model.backend=numpy", *SELECT])
    summary = run_training(numpy_cfg, tmp_path / "np", progress="off")
    rows = read_metrics(tmp_path / "np" / "metrics.csv")
    best_by_val = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert summary["selected_on"] == "val_acc" and summary["best_epoch"] == best_by_val["epoch"]


def test_bad_fractions_are_one_line_errors(cli):
    assert_one_line_error(
        cli("train", "moons", "--set", "data.val_fraction=1.5"), "data.val_fraction"
    )
    tiny = ["--set", "data.val_fraction=0.99", "--set", "data.n_samples=10"]
    assert_one_line_error(cli("train", "moons", *tiny), "data.val_fraction")


def test_resume_with_a_validation_split_is_exact(tmp_path, monkeypatch):
    """A run killed after some evaluations resumes to the same rows and weights."""
    import nnlab.engine.sinks

    every = ["train.checkpoint_every_s=0"]  # a checkpoint at every evaluation
    cfg = load_config("moons", [*SELECT[:1], *every, "train.epochs=12", "train.eval_every=2"])
    whole = run_training(cfg, tmp_path / "whole", progress="off")
    real_save, calls = nnlab.engine.sinks.save_checkpoint, []

    def crash_on_fourth(path, state):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real_save(path, state)

    monkeypatch.setattr(nnlab.engine.sinks, "save_checkpoint", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", progress="off")
    monkeypatch.setattr(nnlab.engine.sinks, "save_checkpoint", real_save)
    from nnlab.engine.run import resume_training

    resumed = resume_training(tmp_path / "cut", progress="off")
    assert resumed["final_test_acc"] == whole["final_test_acc"]
    assert resumed["best_val_acc"] == whole["best_val_acc"]
    cut = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    ref = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    strip = [",".join(line.split(",")[:7] + line.split(",")[8:]) for line in cut]
    assert strip == [",".join(line.split(",")[:7] + line.split(",")[8:]) for line in ref]
    w1 = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    w2 = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["status"] == "completed"
