"""Configs: a ``Config`` of five sections, layered defaults -> preset -> ``--set``.

A config resolves in layers (STYLE.md #4):

1. the defaults of the section dataclasses (``config/sections.py``, one per TOML table),
2. a preset (``src/nnlab/presets/NAME.toml``) or the user's own TOML file, which
   holds only overrides and may ``extends = "other-preset"``,
3. ``--set section.key=value`` overrides from the command line or the API.

Unknown keys, wrong types and impossible values raise ``ConfigError`` naming the
key and what is allowed: values are typed by ``config.values.coerce`` and checked
by ``config.check.validate``. Nothing here imports torch.

``to_toml`` writes the resolved config (a run folder's ``config.toml``) with a
top-level ``preset = "NAME"``, so a run trained again from that file keeps the
preset's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nnlab.config.check import validate
from nnlab.config.files import read_layer
from nnlab.config.sections import (
    SECTIONS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from nnlab.config.tune import check_tune_table, merge_tune_tables, tune_table_toml
from nnlab.config.user_code import fill_user_code, resolve_layer_paths
from nnlab.config.values import coerce, parse_literal, toml_value
from nnlab.errors import ConfigError

# preset: the name runs are named after (to_toml writes it; a file without it is named by its stem)
TOP_LEVEL_KEYS = ("preset", "description", "extends", "sweep", "tune")


@dataclass
class Config:
    """A fully resolved experiment: the five contract sections plus where it came from."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "custom"  # the preset or file stem this came from (names run folders)
    description: str = ""
    # For sweep presets: dotted key -> values, e.g. {"data.name": ["moons", "circles"]}.
    sweep: dict[str, list] = field(default_factory=dict)
    # nnlab tune's [tune] table (config/tune.py): trials, metric, direction, pruner, params
    tune: dict[str, Any] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        """A key's value; ``model.kwargs.NAME`` is one entry of that table (None if unset)."""
        section, key, entry = _split_entry(dotted)
        value = getattr(getattr(self, section), key)
        return value if entry is None else value.get(entry)

    def replace(self, overrides: dict[str, Any]) -> Config:
        """A validated copy with ``{"section.key": value}`` overrides applied."""
        nested = _nest(overrides)
        return _build(self.to_dict(), nested, self.name, self.description, self.sweep, self.tune)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}


# --------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("nnlab.presets").iterdir() if p.name.endswith(".toml")
    )


def preset_description(name: str) -> str:
    return _read_toml_text(_preset_text(name), f"preset '{name}'").get("description", "")


def load_config(source: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Resolve a preset name or TOML path, plus overrides, into a validated Config.

    ``overrides`` is either ``{"optim.lr": 1e-3}`` or a list of ``"key=value"``
    strings as given to ``--set``.
    """
    layers, name, description, sweep, tune = _load_layers(str(source), seen=())
    if isinstance(overrides, list):
        overrides = parse_set_args(overrides)
    nested = {}
    for layer in layers:
        _merge(nested, layer)
    _merge(nested, _nest(overrides or {}))
    defaults = {s: dataclasses.asdict(cls()) for s, cls in SECTIONS.items()}
    return _build(defaults, nested, name, description, sweep, tune)


def parse_set_args(items: list[str]) -> dict[str, str]:
    """``["optim.lr=1e-3", "model.hidden=400,400"]`` -> ``{"optim.lr": "1e-3", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. optim.lr=1e-3")
        _split_entry(key.strip())
        out[key.strip()] = value.strip()
    return out


def typed_override(dotted: str, value: Any) -> Any:
    """A ``--set``/``--grid`` value (a string) or an API value, as the key's type: what
    ``Config.replace`` is given. A ``model.kwargs.NAME`` string is read as a TOML value when it is one."""
    section, key, entry = _split_entry(dotted)
    if entry is not None:
        return parse_literal(value) if isinstance(value, str) else value
    return coerce(dotted, value, typing.get_type_hints(SECTIONS[section])[key])


def _preset_text(name: str) -> str:
    path = resources.files("nnlab.presets") / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"unknown preset '{name}'; known presets: {', '.join(preset_names())} "
            "(or pass a path to a .toml file)"
        )
    return path.read_text(encoding="utf-8")


def _read_toml_text(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: malformed TOML: {exc}") from None


def _load_layers(source: str, seen: tuple[str, ...]) -> tuple[list[dict], str, str, dict, dict]:
    """Read a preset/file and the presets it extends; returns layers oldest first.

    The name is this source's own: its ``preset`` key, else the preset name or file stem
    (a file that extends a preset is named after the file, not the preset).
    """
    text, path = read_layer(source, seen)  # regular files only; depth, cycles (config.files)
    if path is not None:
        where, name = f"config file '{source}'", path.stem
    else:
        text, where, name = _preset_text(source), f"preset '{source}'", source
    raw = _read_toml_text(text, where)
    if path is not None:  # a user's file it names: from its folder
        resolve_layer_paths(raw, path.resolve().parent)
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a [{key}] table")
        elif key not in TOP_LEVEL_KEYS:
            allowed = ", ".join([*SECTIONS, *TOP_LEVEL_KEYS])
            raise ConfigError(f"{where}: unknown key '{key}'; allowed at top level: {allowed}")
    for key in ("preset", "description"):
        if not isinstance(raw.get(key, ""), str):
            raise ConfigError(f"{where}: '{key}' must be a string")
    name = raw.get("preset") or name
    description = raw.get("description", "")
    sweep = _check_sweep(raw.get("sweep", {}), where)
    tune = check_tune_table(raw["tune"], where) if "tune" in raw else {}
    layers: list[dict] = []
    if "extends" in raw:
        parent = raw["extends"]
        if not isinstance(parent, str):
            raise ConfigError(f"{where}: 'extends' must be a preset name or file path")
        layers, _, parent_description, parent_sweep, parent_tune = _load_layers(
            parent, (*seen, source)
        )
        description = description or parent_description
        sweep = {**parent_sweep, **sweep}
        tune = merge_tune_tables(parent_tune, tune)
    layers.append({k: v for k, v in raw.items() if k in SECTIONS})
    return layers, name, description, sweep, tune


def _check_sweep(sweep: Any, where: str) -> dict[str, list]:
    if not isinstance(sweep, dict):
        raise ConfigError(f"{where}: [sweep] must be a table of 'section.key' = [values]")
    for key, values in sweep.items():
        _split_entry(key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: sweep '{key}' must be a non-empty list of values")
    return dict(sweep)


# --------------------------------------------------------------------------- building


def _split_key(dotted: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or section not in SECTIONS:
        raise ConfigError(
            f"unknown key '{dotted}'; keys look like section.key with section one of {', '.join(SECTIONS)}"
        )
    names = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in names:
        raise ConfigError(f"unknown key '{dotted}'; [{section}] has: {', '.join(names)}")
    return section, key


def _split_entry(dotted: str) -> tuple[str, str, str | None]:
    """``section.key`` -> (section, key, None); ``section.table.NAME``, an entry of a table-valued
    key such as ``model.kwargs``, -> (section, table, NAME); else a ConfigError naming the key."""
    section, sep, key = dotted.partition(".")
    table, dot, entry = key.partition(".")
    is_table = sep and section in SECTIONS and dot and entry
    if is_table and typing.get_type_hints(SECTIONS[section]).get(table) is dict:
        return section, table, entry
    section, key = _split_key(dotted)
    return section, key, None


def _nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted overrides as sections; a table entry (``model.kwargs.width``) as a one-entry table."""
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        section, key, entry = _split_entry(dotted)
        if entry is None:
            nested.setdefault(section, {})[key] = value
            continue
        table = nested.setdefault(section, {}).setdefault(key, {})
        if not isinstance(table, dict):
            raise ConfigError(
                f"{dotted}: {section}.{key} is given whole too; give one or the other"
            )
        table[entry] = parse_literal(value) if isinstance(value, str) else value
    return nested


def _merge(into: dict, layer: dict) -> None:
    """Later layers win key by key; a table (``model.kwargs``) merges entry by entry."""
    for section, values in layer.items():
        target = into.setdefault(section, {})
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value


def _build(
    base: dict, nested: dict, name: str, description: str, sweep: dict, tune: dict | None = None
) -> Config:
    sections = {}
    for section, cls in SECTIONS.items():
        values = dict(base[section])
        hints = typing.get_type_hints(cls)
        for key, raw in nested.get(section, {}).items():
            if key not in hints:
                raise ConfigError(
                    f"unknown key '{section}.{key}'; [{section}] has: {', '.join(hints)}"
                )
            value = coerce(f"{section}.{key}", raw, hints[key])
            # a table merges entry by entry, as the layers do (_merge)
            values[key] = {**values[key], **value} if hints[key] is dict else value
        sections[section] = cls(**values)
    # another user's file named here: its digest is the new file's, not the base's
    model_layer = nested.get("model", {})
    if ("name" in model_layer or "modules" in model_layer) and "sha256" not in model_layer:
        sections["model"].sha256 = ""
    fill_user_code(sections["model"])  # paths made absolute, sha256 filled in (no import)
    cfg = Config(**sections, name=name, description=description, sweep=sweep, tune=dict(tune or {}))
    validate(cfg)
    return cfg


# --------------------------------------------------------------------------- identity


def identity(cfg: Config) -> dict[str, Any]:
    """What a run trains, as flat ``{"preset": name, "section.key": value}``.

    Everything but ``train.device``: where a run trains is not what it trains (resume may
    move a run to another device, too). Sweeps compare it to skip only runs trained with
    the same config; ``config_hash`` digests it.
    """
    flat: dict[str, Any] = {"preset": cfg.name}
    for section, values in cfg.to_dict().items():
        flat.update({f"{section}.{key}": value for key, value in values.items()})
    del flat["train.device"]
    return flat


def config_hash(cfg: Config) -> str:
    """12 hex digits of the sha256 of ``identity(cfg)`` as canonical JSON."""
    text = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def config_diff(saved: Config, planned: Config) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, planned value)`` for each key of ``identity`` that differs, in order."""
    a, b = identity(saved), identity(planned)
    return [(key, a.get(key), b[key]) for key in b if a.get(key) != b[key]]


# --------------------------------------------------------------------------- writing


def to_toml(cfg: Config) -> str:
    """The fully resolved config as TOML; ``load_config`` reads it back to an equal Config,
    named ``cfg.name`` (the ``preset`` key)."""
    lines = [f"preset = {toml_value(cfg.name)}"]
    if cfg.description:
        lines.append(f"description = {toml_value(cfg.description)}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            lines.append(f"{key} = {toml_value(value)}")
    if cfg.sweep:
        lines += ["", "[sweep]"]
        lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in cfg.sweep.items()]
    if cfg.tune:
        lines += tune_table_toml(cfg.tune)
    return "\n".join(lines) + "\n"


__all__ = [
    "SECTIONS",
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "coerce",
    "config_diff",
    "config_hash",
    "identity",
    "load_config",
    "parse_set_args",
    "preset_description",
    "preset_names",
    "to_toml",
    "validate",
]
