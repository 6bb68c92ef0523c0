"""Typed config values: TOML values and ``--set`` strings in, TOML text out.

``coerce`` turns what a TOML file or the command line gives into a field's type
(``"400,400"`` -> ``[400, 400]``, ``"on"`` -> ``True``) or raises ``ConfigError``
naming the key; ``toml_value`` writes a value back so that ``coerce`` reads it
unchanged. The field types are those of the section dataclasses in ``config.py``:
int, float, bool, str and lists of them.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from nnlab.errors import ConfigError

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
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


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
        if isinstance(value, numbers) and not isinstance(value, bool):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
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
    raise TypeError(f"cannot write {value!r} as TOML")
