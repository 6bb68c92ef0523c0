"""Typed config values: TOML values and ``--set`` strings in, TOML text out.

``coerce`` turns what a TOML file or the command line gives into a field's type
(``"400,400"`` -> ``[400, 400]``, ``"on"`` -> ``True``) or raises ``ConfigError``
naming the key; ``toml_value`` writes a value back so that ``coerce`` reads it
unchanged. The field types are those of the section dataclasses in ``sections.py``:
int, float, bool, str and lists of them, and ``dict`` (a table, ``model.kwargs``).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import typing
from typing import Any

from nnlab.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BOOLS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def type_label(tp: Any) -> str:
    """How an error message names a field type, with an example for lists."""
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)[0]
        example = {int: "400,400", float: "0.9,0.999", str: "a,b"}[inner]
        return f"a list of {type_label(inner)}s like {example}"
    if tp is dict:
        return 'a table of TOML values like {width = 128, act = "relu"}'
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def parse_literal(text: str) -> Any:
    """A ``--set``/``--grid`` string for a table entry (``model.kwargs.KEY``): its TOML value
    when it is one (``128``, ``0.5``, ``true``, ``[64, 64]``, ``"128"``), else the text itself."""
    try:
        return tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def check_table(key: str, value: Any) -> dict[str, Any]:
    """``value`` if it is a table TOML can write back (string keys; strings, numbers, booleans,
    lists and tables as values), else a ConfigError naming ``key``."""

    def ok(v: Any) -> bool:
        if isinstance(v, (str, bool, int)):
            return True
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, list):
            return all(ok(item) for item in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and ok(item) for k, item in v.items())
        return False

    if not isinstance(value, dict) or not ok(value):
        raise ConfigError(f"{key}: expected {type_label(dict)} (finite numbers), got {value!r}")
    return dict(value)


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Turn a TOML value or a ``--set`` string into the field's type, or raise ConfigError."""
    bad = ConfigError(f"{key}: expected {type_label(tp)}, got {value!r}")
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)[0]
        if isinstance(value, str):
            items: list = [v.strip() for v in value.split(",")] if value.strip() else []
        elif isinstance(value, list):
            items = value
        else:
            items = [value]
        try:
            return [coerce(key, v, inner) for v in items]
        except ConfigError:
            raise bad from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
        raise bad
    if tp in (int, float):
        # bool is an int subclass in Python; a TOML `true` is never a number here.
        # A float field takes a TOML integer (lr = 1); an int field never takes 1.5.
        numbers = (int,) if tp is int else (int, float)
        if isinstance(value, numbers + (str,)) and not isinstance(value, bool):
            try:
                # + 0.0: -0.0 is 0.0 (NumPy refuses a noise scale of -0.0 as negative)
                return int(value) if tp is int else float(value) + 0.0
            except (ValueError, OverflowError):  # "x", or an integer past any float
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if tp is dict:  # a TOML table, or a --set string holding an inline table: {width = 128}
        if isinstance(value, str):
            value = parse_literal(value) if value.strip() else {}
        return check_table(key, value)
    raise TypeError(f"unsupported config type {tp}")  # a bug in the section dataclasses


def toml_value(value: Any) -> str:
    """``value`` as TOML text; ``coerce`` of its parsed form gives ``value`` back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string with ASCII escapes is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table; keys quoted unless bare
        items = (
            f"{k if _BARE_KEY.fullmatch(k) else json.dumps(k)} = {toml_value(v)}"
            for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
