"""The bad-input matrix: every case must exit 2 (or a documented 1) with ONE line on stderr
naming the problem, no traceback, and leave the folder exactly as it was (nothing half-written).

Each case is (id, setup, argv, needle): ``setup(tmp)`` writes the bad input, ``argv``
is given to the CLI in ``tmp``, ``needle`` must appear in the error line.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest
import torch

from conftest import assert_one_line_error
from nnlab.config import load_config
from nnlab.engine.run import run_training

TINY = {"train.epochs": 2, "train.eval_every": 1, "data.n_samples": 100, "train.device": "cpu"}


def _write(name: str, content: str | bytes):
    def setup(tmp: pathlib.Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return setup


def _both(*setups):
    def setup(tmp):
        for s in setups:
            s(tmp)

    return setup


_RUN_CACHE: dict[str, pathlib.Path] = {}


def _run(name: str, finished: bool, **overrides):
    """A real (tiny) run folder copied into the case's folder; unfinished = summary.json removed."""

    def setup(tmp: pathlib.Path) -> None:
        key = repr(sorted(overrides.items()))
        if key not in _RUN_CACHE:
            src = pathlib.Path(tmp).parent / f"_cached_run_{len(_RUN_CACHE)}"
            run_training(load_config("moons", {**TINY, **overrides}), src, progress="off")
            _RUN_CACHE[key] = src
        shutil.copytree(_RUN_CACHE[key], tmp / name)
        if not finished:
            (tmp / name / "summary.json").unlink()

    return setup


class _Payload:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path("PWNED"),))  # relative: inside the case's folder


def _hostile_checkpoint(tmp):
    torch.save({"model": _Payload()}, tmp / "r" / "checkpoints" / "last.pt")


def _swap_checkpoint(tmp):
    shutil.copy(tmp / "other" / "checkpoints" / "last.pt", tmp / "r" / "checkpoints" / "last.pt")


def _none(tmp):
    pass


T = ["train", "moons", "--set", "train.epochs=1"]
CASES = [
    # --- presets and config files
    ("unknown preset", _none, ["train", "mons"], "unknown preset 'mons'"),
    ("missing toml file", _none, ["train", "nope.toml"], "does not exist"),
    (
        "malformed toml",
        _write("c.toml", "[model\nhidden = 1"),
        ["train", "c.toml"],
        "malformed TOML",
    ),
    ("binary toml", _write("c.toml", b"\x00\xff\xfe\x80\x81"), ["train", "c.toml"], "c.toml"),
    ("folder named .toml", lambda t: (t / "d.toml").mkdir(), ["train", "d.toml"], "d.toml"),
    (
        "unknown section",
        _write("c.toml", "[optimizer]\nlr = 1\n"),
        ["train", "c.toml"],
        "unknown key 'optimizer'",
    ),
    (
        "unknown key in section",
        _write("c.toml", "[model]\nwidth = 3\n"),
        ["train", "c.toml"],
        "model.width",
    ),
    (
        "string for a float",
        _write("c.toml", "[optim]\nlr = 'fast'\n"),
        ["train", "c.toml"],
        "optim.lr",
    ),
    (
        "bool for an int",
        _write("c.toml", "[train]\nepochs = true\n"),
        ["train", "c.toml"],
        "train.epochs",
    ),
    (
        "float for an int",
        _write("c.toml", "[train]\nepochs = 2.5\n"),
        ["train", "c.toml"],
        "train.epochs",
    ),
    ("section not a table", _write("c.toml", "model = 3\n"), ["train", "c.toml"], "[model] table"),
    (
        "extends unknown preset",
        _write("c.toml", 'extends = "nah"\n'),
        ["train", "c.toml"],
        "unknown preset 'nah'",
    ),
    (
        "extends cycle",
        _both(_write("a.toml", 'extends = "b.toml"\n'), _write("b.toml", 'extends = "a.toml"\n')),
        ["train", "a.toml"],
        "cycle",
    ),
    (
        "description not a string",
        _write("c.toml", "description = 3\n"),
        ["train", "c.toml"],
        "description",
    ),
    (
        "sweep values not a list",
        _write("c.toml", '[sweep]\n"optim.lr" = 3\n'),
        ["sweep", "c.toml"],
        "optim.lr",
    ),
    (
        "sweep unknown key",
        _write("c.toml", '[sweep]\n"optim.nope" = [1]\n'),
        ["sweep", "c.toml"],
        "optim.nope",
    ),
    (
        "impossible value in file",
        _write("c.toml", "[data]\ntest_fraction = 1.5\n"),
        ["train", "c.toml"],
        "data.test_fraction",
    ),
    # --- --set overrides
    ("negative lr", _none, [*T, "--set", "optim.lr=-1"], "optim.lr"),
    ("zero lr", _none, [*T, "--set", "optim.lr=0"], "optim.lr"),
    ("nan lr", _none, [*T, "--set", "optim.lr=nan"], "optim.lr"),
    ("inf weight decay", _none, [*T, "--set", "optim.weight_decay=inf"], "optim.weight_decay"),
    ("non-integer width", _none, [*T, "--set", "model.hidden=20,abc"], "model.hidden"),
    ("zero width", _none, [*T, "--set", "model.hidden=0"], "model.hidden"),
    ("set without =", _none, [*T, "--set", "optim.lr"], "section.key=value"),
    ("set unknown section", _none, [*T, "--set", "opt.lr=1"], "opt.lr"),
    ("set unknown key", _none, [*T, "--set", "train.wat=1"], "train.wat"),
    ("not a boolean", _none, [*T, "--set", "data.one_hot=maybe"], "data.one_hot"),
    ("test fraction 0", _none, [*T, "--set", "data.test_fraction=0"], "data.test_fraction"),
    ("zero epochs", _none, ["train", "moons", "--set", "train.epochs=0"], "train.epochs"),
    ("zero batch", _none, [*T, "--set", "train.batch_size=0"], "train.batch_size"),
    ("too few samples", _none, [*T, "--set", "data.n_samples=5"], "data.n_samples"),
    ("unknown activation", _none, [*T, "--set", "model.activation=swish"], "model.activation"),
    ("unknown optimizer", _none, [*T, "--set", "optim.name=lbfgs"], "optim.name"),
    ("unknown schedule", _none, [*T, "--set", "schedule.name=warm"], "schedule.name"),
    ("unknown model", _none, [*T, "--set", "model.name=transformer"], "model.name"),
    ("unknown dataset", _none, [*T, "--set", "data.name=mnist"], "data.name"),
    ("one beta", _none, [*T, "--set", "optim.betas=0.9"], "optim.betas"),
    ("nesterov without momentum", _none, [*T, "--set", "optim.nesterov=true"], "optim.nesterov"),
    ("min_lr above lr", _none, [*T, "--set", "schedule.min_lr=1"], "schedule.min_lr"),
    (
        "numpy backend for a cnn",
        _none,
        [*T, "--set", "model.name=cnn", "--set", "model.backend=numpy"],
        "model.backend",
    ),
    # --- command line
    ("unknown command", _none, ["frobnicate"], "invalid choice"),
    ("train without a preset", _none, ["train"], "PRESET"),
    ("unknown flag", _none, [*T, "--bogus"], "--bogus"),
    ("unknown device", _none, [*T, "--device", "tpu"], "tpu"),
    ("cuda not available", _none, [*T, "--device", "cuda"], "CUDA is not available"),
    ("zero seeds", _none, [*T, "--seeds", "0"], "--seeds"),
    ("non-integer seed", _none, [*T, "--seed", "x"], "--seed"),
    ("grid without values", _none, ["sweep", "moons", "--grid", "optim.lr"], "--grid"),
    ("grid unknown key", _none, ["sweep", "moons", "--grid", "optim.nope=1,2"], "optim.nope"),
    ("grid bad value", _none, ["sweep", "moons", "--grid", "optim.lr=1,abc"], "optim.lr"),
    ("grid empty range", _none, ["sweep", "moons", "--grid", "train.epochs=5..3"], "empty range"),
    ("grid float range", _none, ["sweep", "moons", "--grid", "train.epochs=1.5..3"], "integers"),
    ("zero jobs", _none, ["sweep", "moons", "--jobs", "0"], "--jobs"),
    # --- output folders
    ("out is a file", _write("f", "x"), [*T, "--out", "f"], "not a folder"),
    ("out is not a run", _write("o/notes.txt", "mine"), [*T, "--out", "o"], "not an nnlab run"),
    ("out holds a finished run", _run("r", finished=True), [*T, "--out", "r"], "finished run"),
    (
        "sweep out is a run",
        _run("r", finished=True),
        ["sweep", "moons", "--out", "r"],
        "single run",
    ),
    ("sweep out is a file", _write("f", "x"), ["sweep", "moons", "--out", "f"], "not a folder"),
    (
        "sweep out is foreign",
        _write("o/notes.txt", "mine"),
        ["sweep", "moons", "--out", "o"],
        "not an nnlab sweep",
    ),
    # --- run folders given to resume
    ("resume a missing folder", _none, ["resume", "nowhere"], "not an nnlab run folder"),
    (
        "resume an empty folder",
        lambda t: (t / "e").mkdir(),
        ["resume", "e"],
        "not an nnlab run folder",
    ),
    ("resume a finished run", _run("r", finished=True), ["resume", "r"], "finished"),
    (
        "resume with a bad config.toml",
        _both(_run("r", finished=False), _write("r/config.toml", "[model]\nhidden = 'x'\n")),
        ["resume", "r"],
        "model.hidden",
    ),
    (
        "resume a torn checkpoint",
        _both(_run("r", finished=False), _write("r/checkpoints/last.pt", b"PK\x03\x04")),
        ["resume", "r"],
        "last.pt",
    ),
    (
        "resume an empty checkpoint",
        _both(_run("r", finished=False), _write("r/checkpoints/last.pt", b"")),
        ["resume", "r"],
        "last.pt",
    ),
    (
        "resume a hostile checkpoint",
        _both(_run("r", finished=False), _hostile_checkpoint),
        ["resume", "r"],
        "last.pt",
    ),
    (
        "resume a checkpoint of another model",
        _both(
            _run("r", finished=False),
            _run("other", finished=False, **{"model.hidden": [5]}),
            _swap_checkpoint,
        ),
        ["resume", "r"],
        "not written by this run",
    ),
    (
        "resume with another config",
        _run("r", finished=False),
        ["train", "moons", "--set", "optim.lr=0.5", "--resume", "r"],
        "different config",
    ),
    (
        "resume with a bad metrics header",
        _both(_run("r", finished=False), _write("r/metrics.csv", "a,b\n1,2\n")),
        ["resume", "r"],
        "metrics",
    ),
    (
        "resume with --out",
        _run("r", finished=False),
        ["train", "--resume", "r", "--out", "x"],
        "--resume",
    ),
]


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("case_id, setup, argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, cli, case_id, setup, argv, needle):
    case = tmp_path / "case"
    case.mkdir()
    setup(case)
    before = _snapshot(case)
    proc = cli(*argv, cwd=case)
    assert_one_line_error(proc, needle)
    assert _snapshot(case) == before, "a rejected input must leave nothing written or changed"
    assert not (case / "PWNED").exists(), "a hostile payload ran"
    assert not (case / "runs").exists()


def test_matrix_is_broad():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
