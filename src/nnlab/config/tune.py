"""``nnlab tune``'s settings and search space: the ``[tune]`` table and ``--param KEY=SPEC``.

In a preset or TOML file (``extends`` merges the parent's table, params key by key)::

    [tune]
    trials = 40              # the study's budget: trials in the study, over every rerun
    metric = "val_acc"       # val_acc | val_loss, on data.val_fraction of the training set
    direction = "maximize"   # maximize | minimize ("" = maximize val_acc, minimize val_loss)
    pruner = "median"        # median | halving | none

    [tune.params]
    "optim.lr" = "loguniform(1e-3, 1)"
    "model.hidden" = "logint(8, 128)"
    "model.activation" = ["relu", "tanh"]     # a list is a choice

A SPEC, the same in the table and on the command line (``--param 'optim.lr=loguniform(1e-4,1e-1)'``;
quote it for the shell's sake):

- ``loguniform(LOW, HIGH)``: a float drawn on a log scale (0 < LOW < HIGH);
- ``uniform(LOW, HIGH)``: a float;
- ``int(LOW, HIGH)``, ``logint(LOW, HIGH)``: an integer, both ends included;
- ``choice(A, B, ...)``: one of the values, each written as ``--set`` writes it; a list
  value goes in brackets: ``choice([64], [64,64], [128,128])``.

A numeric range on a list key (``model.hidden``) sets every element of the config's list:
the width of every layer, the depth unchanged. Keys that would change the examples the
trials are scored on (``data.name``, ``data.val_fraction``, ``train.seed``, ...) cannot be
tuned. Nothing here imports optuna: a ``ParamSpec`` asks a trial (any object with
``suggest_float``, ``suggest_int``, ``suggest_categorical``) for its value.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from nnlab.config.sections import SECTIONS
from nnlab.config.values import coerce, toml_value
from nnlab.errors import ConfigError

KINDS = ("loguniform", "uniform", "int", "logint", "choice")
METRICS = {"val_acc": "maximize", "val_loss": "minimize"}  # metric -> its natural direction
DIRECTIONS = ("maximize", "minimize")
PRUNERS = ("median", "halving", "none")
TABLE_KEYS = ("trials", "metric", "direction", "pruner", "params")
# data.* keys that only change how the training examples are presented: the others would change
# the examples themselves (and so the validation split every trial is scored on).
TUNABLE_DATA_KEYS = ("augment", "normalize", "crop_padding", "cutout_size", "one_hot", "epoch_size")
FIXED_KEYS = {
    "train.seed": "every trial trains with the same seed, so trials differ only in what is tuned",
    "train.device": "where a trial trains is not what it trains",
}


@dataclass(frozen=True)
class ParamSpec:
    """One tuned key: its kind, range or choices, and how a trial's draw becomes a config value."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    # choice: the values as the study stores them (optuna takes only None, bool, int, float
    # and str): a list key's values as "64,64" strings, others typed
    choices: tuple = ()

    @property
    def text(self) -> str:
        """The spec as written in the canonical syntax, e.g. ``loguniform(0.001, 1.0)``."""
        if self.kind == "choice":
            return f"choice({', '.join(_choice_text(self.key, c) for c in self.choices)})"
        return f"{self.kind}({self.low}, {self.high})"

    def suggest(self, trial: Any) -> Any:
        """The trial's draw for this key, as the study stores it (see ``config_value``)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind in ("loguniform", "uniform"):
            return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")
        return trial.suggest_int(self.key, self.low, self.high, log=self.kind == "logint")

    def config_value(self, raw: Any, base: Any) -> Any:
        """A stored draw as the config's value; ``base`` is the key's value in the base config."""
        tp = _key_type(self.key)
        if typing.get_origin(tp) is not list:
            return raw
        if self.kind == "choice":
            return coerce(self.key, raw, tp)
        return [raw] * max(len(base), 1)  # every layer's width, the depth as configured


@dataclass
class TuneSettings:
    """What ``nnlab tune`` searches, for how long, and on what score."""

    trials: int = 20
    metric: str = "val_acc"
    direction: str = "maximize"
    pruner: str = "median"
    params: dict[str, ParamSpec] = field(default_factory=dict)


# --------------------------------------------------------------------------- specs


def parse_spec(key: str, spec: Any, where: str = "--param") -> ParamSpec:
    """``"loguniform(1e-4, 1e-1)"`` (or a list: a choice) for ``key`` -> a ``ParamSpec``.

    Raises ConfigError, one line starting with ``where`` and the key, on an unknown or
    untunable key, bad syntax, an empty or reversed range, or a value of the wrong type.
    """
    tp = _check_key(key, where)
    if isinstance(spec, list):  # the TOML shorthand for a choice
        args = [_list_text(v) if isinstance(v, list) else str(v) for v in spec]
        kind = "choice"
    elif isinstance(spec, str):
        match = re.fullmatch(r"\s*([a-z]+)\s*\((.*)\)\s*", spec)
        if not match or match[1] not in KINDS:
            raise ConfigError(
                f"{where} {key}: expected {' | '.join(k + '(...)' for k in KINDS)}, got {spec!r}"
            )
        kind, args = match[1], _split_args(match[2])
    else:
        raise ConfigError(
            f"{where} {key}: expected a spec string or a list of choices, got {spec!r}"
        )
    bad = f"{where} {key}={_shown(spec)}:"
    inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
    if kind == "choice":
        return _parse_choice(key, args, tp, bad)
    if len(args) != 2:
        raise ConfigError(f"{bad} {kind} takes two bounds, LOW and HIGH")
    want = int if kind in ("int", "logint") else float
    if inner is bool or inner is str:
        raise ConfigError(f"{bad} {key} is not a number: use choice(...)")
    if want is float and inner is int:
        raise ConfigError(f"{bad} {key} is an integer: use int(LOW, HIGH) or logint(LOW, HIGH)")
    if want is int and inner is float:
        raise ConfigError(
            f"{bad} {key} is a number: use uniform(LOW, HIGH) or loguniform(LOW, HIGH)"
        )
    try:
        low, high = (want(a) for a in args)
    except ValueError:
        kind_name = "integers" if want is int else "numbers"
        raise ConfigError(f"{bad} the bounds must be {kind_name}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError(f"{bad} needs LOW < HIGH, got {low} and {high}")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{bad} a log scale needs 0 < LOW, got {low}")
    return ParamSpec(key, kind, low, high)


def _parse_choice(key: str, args: list[str], tp: Any, bad: str) -> ParamSpec:
    if not args or any(not a for a in args):
        raise ConfigError(f"{bad} choice needs one or more values, separated by commas")
    is_list = typing.get_origin(tp) is list
    values = []
    for arg in args:
        text = arg[1:-1] if is_list and arg.startswith("[") and arg.endswith("]") else arg
        text = text.strip().strip("'\"") if not is_list else text.replace(" ", "")
        try:
            value = coerce(key, text, tp)
        except ConfigError as exc:
            raise ConfigError(f"{bad} {exc}") from None
        stored = ",".join(map(str, value)) if is_list else value
        if stored in values:
            raise ConfigError(f"{bad} {arg} is given twice")
        values.append(stored)
    return ParamSpec(key, "choice", choices=tuple(values))


def parse_param_args(items: list[str]) -> dict[str, ParamSpec]:
    """``["optim.lr=loguniform(1e-4,1e-1)", ...]`` (``--param``) -> key -> ``ParamSpec``."""
    out = {}
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--param {item!r}: expected KEY=SPEC, e.g. 'optim.lr=loguniform(1e-4,1e-1)'"
            )
        out[key.strip()] = parse_spec(key.strip(), spec.strip())
    return out


def _check_key(key: str, where: str) -> Any:
    """The type of a tunable config key; ConfigError if it is unknown or may not be tuned."""
    section, sep, name = key.partition(".")
    if not sep or section not in SECTIONS:
        raise ConfigError(
            f"{where} {key}: unknown key; keys look like section.key with section one of "
            f"{', '.join(SECTIONS)}"
        )
    names = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if name not in names:
        raise ConfigError(f"{where} {key}: unknown key; [{section}] has: {', '.join(names)}")
    if section == "data" and name not in TUNABLE_DATA_KEYS:
        raise ConfigError(
            f"{where} {key}: cannot be tuned: it changes the examples every trial is scored on "
            f"(data keys that can: {', '.join(TUNABLE_DATA_KEYS)})"
        )
    if key in FIXED_KEYS:
        raise ConfigError(f"{where} {key}: cannot be tuned: {FIXED_KEYS[key]}")
    return _key_type(key)


def _key_type(key: str) -> Any:
    section, _, name = key.partition(".")
    return typing.get_type_hints(SECTIONS[section])[name]


def _split_args(text: str) -> list[str]:
    """``"a, [1,2], b"`` -> ``["a", "[1,2]", "b"]``: commas outside brackets separate."""
    args, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip() or args:
        args.append(current.strip())
    return args


def _list_text(value: list) -> str:
    return "[" + ",".join(str(v) for v in value) + "]"


def _choice_text(key: str, choice: Any) -> str:
    if typing.get_origin(_key_type(key)) is list:
        return f"[{choice}]"
    return toml_value(choice).strip('"') if isinstance(choice, str) else toml_value(choice)


def _shown(spec: Any) -> str:
    return spec if isinstance(spec, str) else toml_value(spec)


# --------------------------------------------------------------------------- the [tune] table


def check_tune_table(raw: Any, where: str) -> dict[str, Any]:
    """A ``[tune]`` table from a TOML file, checked; params as canonical spec strings
    (what ``to_toml`` writes back). ConfigError, one line naming ``where`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [tune] must be a table (see 'nnlab tune --help')")
    for key in raw:
        if key not in TABLE_KEYS:
            raise ConfigError(
                f"{where}: unknown key 'tune.{key}'; [tune] has: {', '.join(TABLE_KEYS)}"
            )
    table: dict[str, Any] = {k: raw[k] for k in TABLE_KEYS if k in raw and k != "params"}
    _check_settings(table, f"{where}: tune.")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f'{where}: [tune.params] must be a table of "section.key" = "SPEC"')
    if params:
        where_params = f"{where}: [tune.params]"
        table["params"] = {k: parse_spec(k, v, where_params).text for k, v in params.items()}
    return table


def merge_tune_tables(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A preset's ``[tune]`` over the one it extends: settings replaced, params merged by key."""
    merged = {**parent, **{k: v for k, v in child.items() if k != "params"}}
    params = {**parent.get("params", {}), **child.get("params", {})}
    if params:
        merged["params"] = params
    return merged


def _check_settings(values: dict[str, Any], prefix: str) -> None:
    trials = values.get("trials", 1)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"{prefix}trials: must be an integer >= 1, got {trials!r}")
    if values.get("metric", "val_acc") not in METRICS:
        raise ConfigError(
            f"{prefix}metric: must be one of {', '.join(METRICS)} (scored on data.val_fraction "
            f"of the training set, never the test set), got {values['metric']!r}"
        )
    if values.get("direction", "") not in ("", *DIRECTIONS):
        raise ConfigError(
            f"{prefix}direction: must be {' or '.join(DIRECTIONS)}, got {values['direction']!r}"
        )
    if values.get("pruner", "median") not in PRUNERS:
        raise ConfigError(
            f"{prefix}pruner: must be one of {', '.join(PRUNERS)}, got {values['pruner']!r}"
        )


def tune_settings(
    table: dict[str, Any],
    params: dict[str, ParamSpec] | None = None,
    *,
    trials: int | None = None,
    metric: str | None = None,
    direction: str | None = None,
    pruner: str | None = None,
) -> TuneSettings:
    """The settings of one ``nnlab tune``: a config's ``[tune]`` table, then the command's
    flags (``params`` extend or replace the table's keys). ConfigError without any param."""
    given = {"trials": trials, "metric": metric, "direction": direction, "pruner": pruner}
    values = {**table, **{k: v for k, v in given.items() if v is not None}}
    _check_settings(values, "")
    space = {k: parse_spec(k, v, "[tune.params]") for k, v in table.get("params", {}).items()}
    space.update(params or {})
    if not space:
        raise ConfigError(
            "nothing to tune: give --param KEY=SPEC (e.g. 'optim.lr=loguniform(1e-4,1e-1)') "
            "or a [tune.params] table in the config"
        )
    metric = values.get("metric", "val_acc")
    return TuneSettings(
        trials=values.get("trials", TuneSettings.trials),
        metric=metric,
        direction=values.get("direction") or METRICS[metric],
        pruner=values.get("pruner", "median"),
        params=space,
    )


def tune_table_toml(table: dict[str, Any]) -> list[str]:
    """``[tune]`` and ``[tune.params]`` as TOML lines (``config.to_toml``)."""
    lines = ["", "[tune]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if k != "params"]
    if table.get("params"):
        lines += ["", "[tune.params]"]
        lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in table["params"].items()]
    return lines
