"""A user's own model (model.name = FILE.py:Class) and NumPy modules (model.modules).

What is proved: the config keys (model.kwargs from TOML and --set, relative paths, the
sha256, TOML round trip); a user's MLP and NumPy modules train to exactly what nnlab's
own do from the same seed; --seeds and sweeps train them one by one; resume refuses a
changed or vanished file; report and open_run never import a file named in a run
folder; every bad file is one line and exit 2 with nothing written.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

import nnlab
from conftest import assert_one_line_error
from nnlab.config import load_config, to_toml
from nnlab.config.user_code import file_sha256
from nnlab.errors import ConfigError, RunError

FIXTURES = Path(__file__).parent / "fixtures" / "user_models"
# moons, small and quick: 400 points, 6 epochs of batches of 32
QUICK = {
    "data.n_samples": 400,
    "train.epochs": 6,
    "train.eval_every": 2,
    "train.batch_size": 32,
    "train.device": "cpu",
}
QUICK_SET = [f"--set={k}={v}" for k, v in QUICK.items()]


def _metrics(run) -> list[tuple]:
    return [(r["epoch"], r["step"], r["train_acc"], r["test_acc"]) for r in run.rows]


def _losses(run) -> list[float]:
    return [r["test_loss"] for r in run.rows]


def _forget_user_modules() -> None:
    """Drop user files imported so far, so that importing one again runs its code again."""
    for name in [n for n in sys.modules if n.startswith("nnlab_user_")]:
        del sys.modules[name]


@pytest.fixture
def user_files(tmp_path):
    """The fixture files copied to tmp_path/code (tests that edit or delete them)."""
    code = tmp_path / "code"
    shutil.copytree(FIXTURES, code)
    return code


# --------------------------------------------------------------------------- config


def test_kwargs_and_paths_resolve_and_round_trip(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    shutil.copy(FIXTURES / "mlp.py", tmp_path / "exp" / "net.py")
    toml = tmp_path / "exp" / "mine.toml"
    toml.write_text(
        'extends = "moons"\n[model]\nname = "net.py:MLP"\n[model.kwargs]\nhidden = [8]\nnote = "a"\n'
        '[sweep]\n"model.name" = ["net.py:MLP", "mlp"]\n'
    )
    monkeypatch.chdir(tmp_path)  # the path is read from the TOML file's folder, not from here
    cfg = load_config(str(toml), ["model.kwargs.hidden=[16, 16]", "model.kwargs.flag=true"])
    assert cfg.model.name == f"{tmp_path / 'exp' / 'net.py'}:MLP"
    assert cfg.model.kwargs == {"hidden": [16, 16], "note": "a", "flag": True}
    assert cfg.model.sha256 == file_sha256(tmp_path / "exp" / "net.py")
    assert cfg.get("model.kwargs.hidden") == [16, 16]
    assert cfg.sweep["model.name"] == [cfg.model.name, "mlp"]  # a [sweep] path likewise
    (tmp_path / "saved.toml").write_text(to_toml(cfg))
    again = load_config(str(tmp_path / "saved.toml"))
    assert again.to_dict() == cfg.to_dict()
    # an entry merges into the table; from --set, a relative path is read from the cwd
    assert cfg.replace({"model.kwargs.hidden": [4]}).model.kwargs["note"] == "a"
    monkeypatch.chdir(tmp_path / "exp")
    here = load_config("moons", ["model.name=net.py:MLP"])
    assert here.model.name == cfg.model.name and here.model.sha256 == cfg.model.sha256
    from nnlab.config.help import format_keys

    assert "model.kwargs" in format_keys() and "model.modules" in format_keys()


def test_a_package_module_is_found_without_importing_it(monkeypatch):
    from nnlab.models import build_model

    monkeypatch.chdir(FIXTURES.parent.parent)  # tests/: fixtures.user_models is a namespace package
    cfg = load_config("moons", {"model.name": "fixtures.user_models.mlp:MLP"})
    assert cfg.model.sha256 == file_sha256(FIXTURES / "mlp.py")
    assert "fixtures.user_models.mlp" not in sys.modules  # located, not imported
    try:
        model = build_model(cfg.model, (2,), 2)
        assert type(model).__name__ == "MLP" and "fixtures.user_models.mlp" in sys.modules
    finally:
        for name in [n for n in sys.modules if n == "fixtures" or n.startswith("fixtures.")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"model.kwargs.width": 3}, "model.kwargs"),  # nnlab's own mlp takes no kwargs
        ({"model.modules": "m.py"}, "model.modules"),  # modules need backend numpy
        ({"model.name": "net.py:"}, "model.name"),
        ({"model.name": "mlpp"}, "model.name"),
        ({"model.name": "nothere.py:Net"}, "no such file"),
        ({"model.name": "no_such_package_xyz.mod:Net"}, "no module"),
    ],
)
def test_bad_user_keys_are_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config("moons", overrides)


# --------------------------------------------------------------------------- training


def test_user_mlp_trains_exactly_like_nnlabs_mlp(tmp_path):
    """Same layers, same seed: the same initial weights, so the same metrics, row by row
    (nnlab's MLP with autograd: the hand-derived step is for nnlab's own MLP only)."""
    ours = nnlab.train("moons", {**QUICK, "train.manual_step": "off"}, out=tmp_path / "ours")
    spec = f"{FIXTURES / 'mlp.py'}:MLP"
    theirs = nnlab.train(
        "moons",
        {**QUICK, "model.name": spec, "model.kwargs.hidden": "[64, 64]"},
        out=tmp_path / "t",
    )
    assert _metrics(theirs) == _metrics(ours)
    assert _losses(theirs) == pytest.approx(_losses(ours), rel=1e-6)
    code = theirs.summary["user_code"]
    assert code["path"] == str(FIXTURES / "mlp.py") and code["class"] == "MLP"
    assert code["sha256"] == file_sha256(FIXTURES / "mlp.py")
    assert "nnlab's own MLP" in theirs.summary["plan"]["why"]["step"]
    with pytest.raises(ConfigError, match="manual_step"):
        nnlab.train(
            "moons", {**QUICK, "model.name": spec, "train.manual_step": "on"}, out=tmp_path / "m"
        )
    assert not (tmp_path / "m").exists()


def test_user_numpy_modules_train_exactly_like_nnlabs(tmp_path):
    numpy = {**QUICK, "model.backend": "numpy", "model.activation": "tanh"}
    ours = nnlab.train("moons", numpy, out=tmp_path / "ours")
    theirs = nnlab.train(
        "moons", {**numpy, "model.modules": str(FIXTURES / "modules_ok.py")}, out=tmp_path / "t"
    )
    assert _metrics(theirs) == _metrics(ours)
    assert _losses(theirs) == pytest.approx(_losses(ours), rel=1e-5)
    assert theirs.summary["user_code"]["key"] == "model.modules"
    assert (theirs.path / "boundary.npz").is_file()
    # open_run gives the weights in nnlab's own MLP: the user's file is not imported
    assert theirs.evaluate()["acc"] == pytest.approx(theirs.summary["final_test_acc"])


def test_seeds_and_sweeps_train_user_models_one_by_one(cli, tmp_path):
    spec = f"model.name={FIXTURES / 'mlp.py'}:MLP"
    proc = cli("train", "moons", *QUICK_SET, "--set", spec, "--seeds", "2", "--out", "s")
    assert proc.returncode == 0, proc.stderr
    for seed in (0, 1):
        summary = json.loads((tmp_path / "s" / f"seed={seed}" / "summary.json").read_text())
        assert summary["stacked"] == 1 and summary["user_code"]["class"] == "MLP"
    proc = cli(
        "sweep", "moons", *QUICK_SET, "--set", spec, "--grid", "model.kwargs.hidden=[8],[16]",
        "--out", "g",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "g" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model.kwargs.hidden"] for r in rows] == ["8", "16"]  # a list as --set writes it
    assert (
        json.loads((tmp_path / "g" / rows[1]["run"] / "summary.json").read_text())["n_params"]
        == 16 * 2 + 16 + 16 * 2 + 2
    )


def test_resume_refuses_a_changed_or_vanished_file(cli, tmp_path, user_files):
    net = user_files / "mlp.py"
    assert (
        cli("train", "moons", *QUICK_SET, "--set", f"model.name={net}:MLP", "--out", "r").returncode
        == 0
    )
    (tmp_path / "r" / "summary.json").unlink()  # as if killed before the end
    proc = cli("resume", "r")
    assert proc.returncode == 0, proc.stderr  # the same file: it goes on
    (tmp_path / "r" / "summary.json").unlink()
    net.write_text(net.read_text() + "\n# edited\n")
    assert_one_line_error(cli("resume", "r"), "has changed since", str(net))
    net.unlink()
    assert_one_line_error(cli("resume", "r"), "no longer exists")
    assert not (tmp_path / "r" / "summary.json").exists()


def _helpers_beside(code: Path) -> Path:
    """code/net.py (the fixture MLP) importing a helper beside it, which imports a package
    of the user's; both also import torch and the standard library, which do not count."""
    (code / "nnlab_t_pkg").mkdir(parents=True)
    (code / "nnlab_t_pkg" / "__init__.py").write_text("")
    (code / "nnlab_t_pkg" / "acts.py").write_text("from torch import nn\n\nACT = nn.ReLU\n")
    (code / "nnlab_t_layers.py").write_text("import os\nfrom nnlab_t_pkg import acts\n")
    net = code / "net.py"
    net.write_text("import torch\nimport nnlab_t_layers\n" + (FIXTURES / "mlp.py").read_text())
    return net


def test_the_digest_covers_the_files_of_yours_a_model_imports(cli, tmp_path):
    from nnlab.code_digest import code_sha256, helper_files
    from nnlab.config.user_code import user_code_problem

    code = tmp_path / "code"
    net = _helpers_beside(code)
    assert helper_files(net, code, code, ()) == [
        code / "nnlab_t_layers.py",
        code / "nnlab_t_pkg" / "__init__.py",
        code / "nnlab_t_pkg" / "acts.py",
    ]
    cfg = load_config("moons", {**QUICK, "model.name": f"{net}:MLP"})
    assert cfg.model.sha256 == code_sha256(net) != file_sha256(net)
    try:
        proc = cli("train", "moons", *QUICK_SET, "--set", f"model.name={net}:MLP", "--out", "r")
        assert proc.returncode == 0, proc.stderr
        (tmp_path / "r" / "summary.json").unlink()  # as if killed before the end
        acts = code / "nnlab_t_pkg" / "acts.py"
        acts.write_text(acts.read_text().replace("ReLU", "Tanh"))  # the model file is as it was
        assert_one_line_error(cli("resume", "r"), "a file of yours it imports, has changed since")
        # a run recorded before helpers counted holds the file's own digest: still resumable
        legacy = load_config(str(tmp_path / "r" / "config.toml")).model
        legacy.sha256 = file_sha256(net)
        assert user_code_problem(legacy) is None
    finally:
        for name in [n for n in sys.modules if n.startswith("nnlab_t_")]:
            del sys.modules[name]


def test_an_edited_helper_is_imported_afresh_in_the_same_process(tmp_path):
    """A notebook trains, edits a helper of its model file, trains again: the second
    import reads the helper as it now is (its digest changed, so the module is new)."""
    from nnlab.models.user_code import import_user_code

    (tmp_path / "nnlab_t_width.py").write_text("WIDTH = 8\n")
    net = tmp_path / "net.py"
    net.write_text("import nnlab_t_width\n\nWIDTH = nnlab_t_width.WIDTH\n")
    try:
        first = import_user_code(str(net))
        assert first.WIDTH == 8 and import_user_code(str(net)) is first  # unchanged: cached
        (tmp_path / "nnlab_t_width.py").write_text("WIDTH = 4  # edited\n")
        again = import_user_code(str(net))
        assert again is not first and again.WIDTH == 4
    finally:
        for name in [n for n in sys.modules if n.startswith("nnlab_t_")]:
            del sys.modules[name]
        _forget_user_modules()


def test_a_modules_digest_follows_its_package_only(tmp_path):
    from nnlab.code_digest import code_sha256, helper_files

    pkg = tmp_path / "nnlab_t_mypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .. import blocks\n")
    (pkg / "blocks.py").write_text("import numpy\nfrom . import sub\n")
    (pkg / "unused.py").write_text("")
    net = pkg / "net.py"
    net.write_text("import torch\nfrom .blocks import B\nfrom ... import beyond\n")
    (tmp_path / "beyond.py").write_text("")  # beyond the top package: not its helper
    expected = [pkg / "__init__.py", pkg / "blocks.py", pkg / "sub" / "__init__.py"]
    assert helper_files(net, tmp_path, pkg, ("nnlab_t_mypkg",)) == expected
    before = code_sha256(net, "nnlab_t_mypkg.net")
    (pkg / "unused.py").write_text("x = 1\n")
    assert code_sha256(net, "nnlab_t_mypkg.net") == before
    (pkg / "sub" / "__init__.py").write_text("from .. import blocks  # edited\n")
    assert code_sha256(net, "nnlab_t_mypkg.net") != before
    # a file with no helpers keeps the digest of its bytes alone
    (tmp_path / "alone.py").write_text("import torch\nimport os.path\n")
    assert code_sha256(tmp_path / "alone.py") == file_sha256(tmp_path / "alone.py")


def test_report_and_open_run_never_import_the_runs_model_file(cli, tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("NNLAB_TEST_MARKER", str(marker))
    spec = f"model.name={FIXTURES / 'marker.py'}:Net"
    assert cli("train", "moons", *QUICK_SET, "--set", spec, "--out", "r").returncode == 0
    assert marker.exists()  # training imports it: the command named it
    marker.unlink()
    _forget_user_modules()
    proc = cli("report", "r", "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    assert "not imported by this report" in (tmp_path / "rep" / "report.md").read_text()
    run = nnlab.open_run(tmp_path / "r")
    assert run.summary["final_test_acc"] > 0.5 and run.rows and run.config.model.kwargs == {}
    with pytest.raises(RunError, match="does not import code named inside a run folder"):
        run.model  # noqa: B018
    assert cli("data", "info").returncode == 0
    assert not marker.exists()
    # the caller imports the class: then the run's model is theirs, with its weights
    from nnlab.models.user import load_model_class

    cls = load_model_class(f"{FIXTURES / 'marker.py'}:Net")
    run.load_model(model_class=cls)
    assert run.evaluate()["acc"] == pytest.approx(run.summary["final_test_acc"])


# --------------------------------------------------------------------------- bad files

BAD_FILES = {
    "syntax.py": ("def broken(:\n    pass\n", "syntax.py, line 1: syntax error"),
    "raises.py": ("raise RuntimeError('no GPU here')\n", "raised RuntimeError: no GPU here"),
    "exits.py": ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_broken_file_is_one_line_and_exit_2(cli, tmp_path, name):
    text, needle = BAD_FILES[name]
    (tmp_path / name).write_text(text)
    proc = cli("train", "moons", *QUICK_SET, "--set", f"model.name={name}:Net", "--out", "r")
    assert_one_line_error(proc, needle, name)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "spec, needles",
    [
        ("nothere.py:Net", ["no such file"]),
        ("mlp.py:Nope", ["has no class 'Nope'", "MLP"]),
        ("mlp.py:Helper", ["is not a torch.nn.Module"]),
        (
            "broken_models.py:WrongShape",
            ["returns shape (2, 3)", "expected logits of shape (2, 2)"],
        ),
        ("broken_models.py:FailsToBuild", ["raised ValueError: no such layer size"]),
        ("mlp.py:MLP --set model.kwargs.depth=3", ["model.kwargs", "depth"]),
    ],
)
def test_a_bad_model_is_one_line_and_exit_2(cli, tmp_path, spec, needles):
    name, *extra = spec.split(" ")
    proc = cli(
        "train", "moons", *QUICK_SET, "--set", f"model.name={FIXTURES / name}", *extra, "--out", "r"
    )
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "r").exists()


def test_bad_numpy_modules_are_one_line(cli, tmp_path):
    (tmp_path / "half.py").write_text(
        "class Linear:\n    def __init__(self, i, o):\n        pass\n"
    )
    base = ["train", "moons", *QUICK_SET, "--set", "model.backend=numpy", "--out", "r"]
    assert_one_line_error(cli(*base, "--set", "model.modules=half.py"), "must hold an array W")
    assert_one_line_error(
        cli(*base, "--set", f"model.modules={FIXTURES / 'mlp.py'}"), "has no class 'Linear'"
    )
    assert not (tmp_path / "r").exists()
