"""Config layering (defaults -> preset -> --set), validation and the TOML round trip."""

from __future__ import annotations

import pytest

from nnlab.config import Config, load_config, parse_set_args, preset_names, to_toml
from nnlab.errors import ConfigError


def test_presets_load_and_validate():
    for name in preset_names():
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.description, f"preset {name} needs a description line"


def test_layering_preset_then_set():
    cfg = load_config("seed-moons")
    assert cfg.model.hidden == [20] and cfg.model.activation == "sigmoid"
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 1e-2
    assert cfg.train.epochs == 1500 and cfg.train.batch_size == 100 and cfg.train.eval_every == 10
    # untouched keys keep the dataclass defaults
    assert cfg.data.test_fraction == 0.2
    cfg2 = load_config("seed-moons", ["model.hidden=400,400", "optim.lr=1e-3", "train.patience=3"])
    assert cfg2.model.hidden == [400, 400] and cfg2.optim.lr == 1e-3 and cfg2.train.patience == 3
    cfg3 = load_config("seed-moons", {"optim.lr": 0.5, "model.hidden": [8]})
    assert cfg3.optim.lr == 0.5 and cfg3.model.hidden == [8]


def test_user_file_extends_preset(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "seed-moons"\n[optim]\nlr = 0.05\n[train]\nepochs = 3\n')
    cfg = load_config(str(path))
    assert cfg.name == "mine" and cfg.optim.lr == 0.05 and cfg.train.epochs == 3
    assert cfg.model.hidden == [20]  # from the preset it extends


def test_toml_round_trip(tmp_path):
    overrides = ["model.hidden=5,6,7", "data.name=cifar10", "data.augment=flip,crop"]
    cfg = load_config("moons", [*overrides, "train.device=cpu"])  # augment: image data only
    path = tmp_path / "config.toml"
    path.write_text(to_toml(cfg))
    again = load_config(str(path))
    assert again.to_dict() == cfg.to_dict()
    # the preset name is a real key, so a run's config.toml trains again under the same name
    assert again.name == "moons" and to_toml(cfg).startswith('preset = "moons"\n')


def test_preset_key_names_the_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('preset = "my-moons"\nextends = "seed-moons"\n[train]\nepochs = 3\n')
    cfg = load_config(str(path), ["optim.lr=0.5"])
    assert cfg.name == "my-moons" and cfg.train.epochs == 3 and cfg.model.hidden == [20]
    assert cfg.replace({"train.seed": 2}).name == "my-moons"
    # a file that extends a run's config.toml is named after itself, not after that run's preset
    (tmp_path / "mine.toml").write_text(f'extends = "{path}"\n')
    assert load_config(str(tmp_path / "mine.toml")).name == "mine"


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["optim.lr=0"], "optim.lr"),
        (["optim.lr=-1"], "optim.lr"),
        (["optim.lr=abc"], "optim.lr"),
        (["optim.lr=nan"], "optim.lr"),
        (["train.epochs=0"], "train.epochs"),
        (["train.epochs=1.5"], "train.epochs"),
        (["model.hidden=20,abc"], "model.hidden"),
        (["model.hidden=0"], "model.hidden"),
        (["data.test_fraction=1"], "data.test_fraction"),
        (["data.test_fraction=0"], "data.test_fraction"),
        (["model.activation=swish"], "model.activation"),
        (["optim.name=lbfgs"], "optim.name"),
        (["schedule.name=warm"], "schedule.name"),
        (["train.device=tpu"], "train.device"),
        (["model.name=transformer"], "model.name"),
        (["data.name=mnist"], "data.name"),
        (["train.nonsense=1"], "train.nonsense"),
        (["nosection.key=1"], "nosection.key"),
        (["noequals"], "noequals"),
        (["data.one_hot=maybe"], "data.one_hot"),
    ],
)
def test_bad_values_name_the_key(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config("moons", overrides)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[model\nhidden = 3", "malformed TOML"),
        ("[model]\nwidth = 3\n", "model.width"),
        ("[optimizer]\nlr = 1\n", "optimizer"),
        ("[optim]\nlr = 'fast'\n", "optim.lr"),
        ("[train]\nepochs = true\n", "train.epochs"),
        ('extends = "no-such-preset"\n', "no-such-preset"),
        ("model = 3\n", "[model] table"),
        ("preset = 3\n", "'preset' must be a string"),
        ("name = 'x'\n", "allowed at top level: data, model, optim, schedule, train, preset"),
    ],
)
def test_bad_files(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert needle in str(err.value)


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError) as err:
        load_config("mons")
    assert "seed-moons" in str(err.value)


def test_replace_and_get():
    cfg = Config().replace({"optim.lr": "0.5"})
    assert cfg.get("optim.lr") == 0.5
    # only the first '=' separates key from value
    assert parse_set_args(["data.dir=a=b"]) == {"data.dir": "a=b"}
