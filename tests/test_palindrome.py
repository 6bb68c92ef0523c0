"""The palindrome datasets (finite and stream), their bad inputs, and training on them end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.data.palindrome import draw_distinct, n_palindromes
from nnlab.engine.loop import fit
from nnlab.engine.setup import seed_everything
from nnlab.models import build_model


def _data(*overrides: str, seed: int = 0):
    # the raw splits: without the preset's validation split (tested in test_validation.py)
    cfg = load_config("palindrome", ["data.val_fraction=0", *overrides])
    return load_data(cfg.data, seed)


def _full(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Inputs (N, T, 1) or (N, T, 10) and targets -> the whole palindromes (N, T+1)."""
    digits = x.argmax(-1) if x.shape[-1] == 10 else x[..., 0].long()
    return torch.cat([digits, y[:, None]], dim=1).numpy()


@pytest.mark.parametrize("length", [1, 2, 5, 6, 20])
@pytest.mark.parametrize("one_hot", [False, True])
def test_finite_palindromes_are_distinct_and_split_cleanly(length, one_hot):
    b = _data(f"data.length={length}", f"data.one_hot={one_hot}", "data.n_samples=500")
    n = min(500, n_palindromes(length))
    assert len(b.y_train) + len(b.y_test) == n and len(b.y_test) == round(n * 0.2)
    assert b.input_shape == (length, 10 if one_hot else 1) and b.x_train.shape[1:] == b.input_shape
    if one_hot:
        assert torch.all(b.x_train.sum(-1) == 1)
    train, test = _full(b.x_train, b.y_train), _full(b.x_test, b.y_test)
    for seqs in (train, test):
        assert np.array_equal(seqs, seqs[:, ::-1])  # palindromes
        assert np.array_equal(seqs[:, -1], seqs[:, 0])  # the target is the first input digit
    both = np.concatenate([train, test])
    assert len(np.unique(both, axis=0)) == n  # distinct, so none is in both splits


def test_finite_is_seeded():
    a, b, c = _data("data.length=9"), _data("data.length=9"), _data("data.length=9", seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train[:100], c.x_train[:100])


def test_long_sequences_need_no_64_bit_shortcut():
    # 10**51 palindromes at T = 100; T = 35 is the last length whose count fits int64.
    for length in (35, 36, 100):
        seqs = draw_distinct(2000, length, np.random.default_rng(0))
        assert seqs.shape == (2000, length + 1) and len(np.unique(seqs, axis=0)) == 2000
        assert np.array_equal(seqs, seqs[:, ::-1])
    assert n_palindromes(100) == 10**51
    b = _data("data.length=100", "data.n_samples=50")
    assert b.x_train.shape == (40, 100, 1)


def test_more_than_exist_are_capped_silently(capsys):
    b = _data("data.length=3", "data.n_samples=5000")  # only 100 palindromes of 4 digits
    assert len(b.y_train) + len(b.y_test) == 100
    assert capsys.readouterr().err == ""  # the cap is n_samples' documented meaning


def test_stream_draws_fresh_reproducible_batches():
    b = _data("data.variant=stream", "data.length=12", "data.n_samples=1000", "data.epoch_size=0")
    assert len(b.y_test) == 200 and b.train_loader is not None
    loader = b.train_loader(64, 0, torch.device("cpu"))
    assert len(loader) == 13  # ceil(800 / 64) batches an epoch

    def epoch(e):
        loader.set_epoch(e)
        xs, ys = zip(*loader, strict=True)
        return torch.cat(xs), torch.cat(ys)

    (e1, y1), (e1_again, _), (e2, _) = epoch(1), epoch(1), epoch(2)
    assert torch.equal(e1, e1_again) and not torch.equal(e1, e2)
    full = _full(e1, y1)
    assert np.array_equal(full, full[:, ::-1])
    again = _data(
        "data.variant=stream", "data.length=12", "data.n_samples=1000", "data.epoch_size=0"
    )
    assert torch.equal(b.x_test, again.x_test)  # the test set is fixed by the seed


def test_epoch_size_repeats_a_small_finite_set():
    b = _data("data.length=3", "data.epoch_size=1000")  # 80 training palindromes
    loader = b.train_loader(128, 0, torch.device("cpu"))
    loader.set_epoch(1)
    xs, ys = zip(*loader, strict=True)
    assert len(loader) == len(xs) == 8 and sum(len(y) for y in ys) == 1000
    first_pass = torch.cat(xs)[:80, :, 0]
    assert len(torch.unique(first_pass, dim=0)) == 80  # every example once before any twice
    assert (
        len(
            _data("data.length=20", "data.n_samples=200", "data.epoch_size=100").train_loader(
                32, 0, "cpu"
            )
        )
        == 4
    )
    assert _data("data.length=20", "data.n_samples=200", "data.epoch_size=0").train_loader is None


def test_stream_trains_through_fit():
    cfg = load_config(
        "palindrome",
        [
            "data.variant=stream",
            "data.length=4",
            "data.n_samples=2000",
            "data.epoch_size=0",
            "model.name=gru",
            "train.epochs=2",
            "train.target_acc=0",
        ],
    )
    seed_everything(0)
    data = load_data(cfg.data, 0)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    result = fit(cfg, model, data, torch.device("cpu"), progress="off")
    # 1600 fresh palindromes an epoch, 128 a batch
    assert result.epochs == 2 and result.steps == 2 * 13


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("data.length=0", "data.length"),
        ("data.one_hot=maybe", "data.one_hot"),
        ("data.n_samples=5", "data.n_samples"),
        ("data.variant=infinite", "data.variant"),
        ("model.name=transformer", "model.name"),
        ("model.forget_bias=nan", "model.forget_bias"),
    ],
)
def test_bad_input_is_one_line(cli, override, needle):
    assert_one_line_error(cli("train", "palindrome", "--set", override), needle)


def test_seed_rnn_reaches_100_percent_at_length_5(cli, tmp_path):
    # The course report's Part 3 result, with correct code; early stopping on a validation
    # split (about 115 epochs of 23 steps).
    proc = cli("train", "seed-rnn", "--out", str(tmp_path / "run"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_test_acc"] == 1.0 and summary["epochs"] < 300


def test_length_sweep_writes_results_and_plot(cli, tmp_path):
    out = tmp_path / "sweep"
    proc = cli(
        "sweep", "palindrome-lengths", "--grid", "data.length=2..4", "--grid", "model.name=rnn,gru",
        "--set", "data.n_samples=100", "--set", "train.epochs=1", "--seeds", "2", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2
    assert {"run", "data.length", "model.name", "seed", "final_test_acc"} <= set(rows[0])
    assert (out / "accuracy_vs_length.png").stat().st_size > 0
