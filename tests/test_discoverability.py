"""What a user can find out without reading the source: presets resolved and explained,
every config key listed, the API in ``dir(nnlab)``, and no warning on a built-in preset."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

import nnlab
from nnlab.config import SECTIONS, load_config, preset_names


def test_every_key_has_a_meaning():
    from nnlab.config.help import field_help

    helps = field_help()
    every = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert set(helps) == every
    assert [k for k in sorted(every) if not helps[k]] == []
    # a comment block above a field and one at the end of its line are both read
    assert "validation" in helps["data.val_fraction"] and "cnn:" in helps["model.widths"]
    assert helps["optim.alpha"] == "rmsprop smoothing constant"


def test_keys_lists_every_key_with_type_default_and_meaning(cli):
    from nnlab.config.help import keys

    proc = cli("keys")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for info in keys():
        (line,) = [ln for ln in lines if ln.split()[:1] == [info.key]]
        assert info.type in line and info.default in line and info.help in line
    assert [ln for ln in lines if ln.startswith("[")] == [f"[{s}]" for s in SECTIONS]
    md = cli("keys", "--markdown").stdout
    assert "| `optim.lr` | float | `0.001` |" in md and md.count("### [") == len(SECTIONS)


def test_presets_name_prints_the_resolved_config_with_meanings(cli, tmp_path):
    proc = cli("presets", "seed-rnn")
    assert proc.returncode == 0, proc.stderr
    cfg = load_config("seed-rnn")
    assert cfg.description in proc.stdout
    assert 'name = "rmsprop"' in proc.stdout and "rmsprop smoothing constant" in proc.stdout
    assert '[default: "adam"]' in proc.stdout  # what the preset changes stands out
    # it is the resolved config: it reads back as the same config
    (tmp_path / "shown.toml").write_text(proc.stdout)
    assert load_config(str(tmp_path / "shown.toml")).to_dict() == cfg.to_dict()
    assert "[sweep]" in cli("presets", "palindrome-lengths").stdout
    tomllib.loads(cli("presets", "palindrome-lengths").stdout)
    # without a name, still one line per preset
    assert len(cli("presets").stdout.strip().splitlines()) == len(preset_names())


def test_presets_of_an_unknown_name_is_one_line(cli):
    from conftest import assert_one_line_error

    assert_one_line_error(cli("presets", "nope"), "unknown preset 'nope'", "moons")


@pytest.mark.parametrize(
    "name", ["train", "sweep", "tune", "report", "resume", "open_run", "load_config"]
)
def test_the_api_is_in_dir_with_its_own_docs(name):
    assert name in dir(nnlab) and name in nnlab.__all__
    fn = getattr(nnlab, name)
    assert callable(fn) and fn.__module__ == "nnlab.api"
    assert fn.__doc__ and fn.__doc__ == getattr(nnlab.api, name).__doc__


PALINDROME_RUNS = [
    (n, length)
    for n in preset_names()
    if load_config(n).data.name == "palindrome"
    for length in load_config(n).sweep.get("data.length", [load_config(n).data.length])
]


@pytest.mark.parametrize(("name", "length"), PALINDROME_RUNS)
def test_no_palindrome_preset_warns_when_its_data_loads(name, length, capsys):
    # seed-rnn asked for 100000 palindromes at T=5, where 1000 exist, and palindrome-lengths
    # for as many at every length: a notice on every run. n_samples is capped by design.
    from nnlab.data import load_data

    cfg = load_config(name, {"data.length": length, "data.n_samples": 2000})
    load_data(cfg.data, cfg.train.seed)
    assert capsys.readouterr().err == ""


def test_more_palindromes_than_exist_are_capped_and_recorded():
    from nnlab.data import load_data

    cfg = load_config("seed-rnn", {"data.n_samples": 4321})
    data = load_data(cfg.data, cfg.train.seed)
    held_out = len(data.y_val) if data.y_val is not None else 0
    assert (
        len(data.y_train) + held_out + len(data.y_test) == 1000 == int(data.info["n_palindromes"])
    )
