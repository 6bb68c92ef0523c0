"""Which file of the user's a config names, where it is, and its sha256; never imported here.

A user's code enters a config in two keys (docs/user-models.md):

- ``model.name = "path/to/file.py:Class"`` or ``"package.module:Class"``: a torch model;
- ``model.modules = "path/to/modules.py"`` with ``model.backend = "numpy"``: the NumPy MLP's
  modules.

A relative path is read from the folder of the TOML file that names it
(``resolve_layer_paths``), or from the current folder when it comes from ``--set`` or the
API (``fill_user_code``); the config keeps the absolute path. ``model.sha256`` records
the digest of the file and of the helpers of the user's it imports (``nnlab/code_digest.py``)
when the config is resolved, so that a run folder's ``config.toml``
says which code trained it and ``resume`` can refuse a file that has changed since
(``user_code_problem``). Only bytes are read here: the file is imported by the model
builders (``nnlab.models.user_code``), and only where the user named it in the command
or config being run, never from a run folder that ``report`` or ``open_run`` were given.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from nnlab.code_digest import code_sha256, file_sha256
from nnlab.errors import ConfigError

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def is_user_model(name: str) -> bool:
    """Whether ``model.name`` names a user's class (``FILE.py:Class``, ``package.module:Class``)."""
    return ":" in name


def is_file_target(target: str) -> bool:
    """A path (``net.py``, ``models/net``) rather than an importable ``package.module``."""
    return target.endswith(".py") or "/" in target or os.sep in target


def parse_user_model(name: str) -> tuple[str, str]:
    """``"FILE.py:Class"`` -> ``("FILE.py", "Class")``, or a ConfigError saying what is malformed."""
    target, _, cls = name.rpartition(":")
    if not _IDENTIFIER.fullmatch(cls):
        raise ConfigError(
            f"model.name: a user's model is FILE.py:Class or package.module:Class, with Class a "
            f"Python name, got {name!r}"
        )
    if not target or not (
        (is_file_target(target) and target.endswith(".py")) or _DOTTED.fullmatch(target)
    ):
        raise ConfigError(
            f"model.name: a user's model is FILE.py:Class (a .py file) or package.module:Class, "
            f"got {name!r}"
        )
    return target, cls


def _absolute(path: str, base: Path) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def resolve_layer_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the user's file paths in a TOML file's ``[model]`` table and ``[sweep]`` lists
    absolute, from ``base`` (the folder of that TOML file), in place."""
    model, sweep = raw.get("model"), raw.get("sweep")
    for table, name_key, modules_key in ((model, "name", "modules"), (sweep, *_SWEPT)):
        if not isinstance(table, dict):
            continue
        for key, resolve in ((name_key, _resolve_name), (modules_key, _absolute)):
            value = table.get(key)
            if isinstance(value, list):
                table[key] = [resolve(v, base) if isinstance(v, str) and v else v for v in value]
            elif isinstance(value, str) and value:
                table[key] = resolve(value, base)


_SWEPT = ("model.name", "model.modules")  # [sweep] keys that may name a user's file


def _resolve_name(name: str, base: Path) -> str:
    """A ``model.name`` with its file path made absolute from ``base`` (others unchanged)."""
    if not is_user_model(name):
        return name
    target, _, cls = name.rpartition(":")
    return f"{_absolute(target, base)}:{cls}" if is_file_target(target) else name


def user_code_file(model: Any) -> tuple[str, Path | None, str | None] | None:
    """``(key, file, class)`` for the user's file ``model`` (a ModelConfig) names, or None.

    ``key`` is ``model.name`` or ``model.modules``; ``file`` is None for a
    ``package.module`` that cannot be found; ``class`` is None for modules."""
    if is_user_model(model.name):
        target, cls = parse_user_model(model.name)
        path = Path(target) if is_file_target(target) else locate_module(target)
        return "model.name", path, cls
    if model.modules:
        return "model.modules", Path(model.modules), None
    return None


def locate_module(dotted: str) -> Path | None:
    """The source file of ``package.module`` (a package's ``__init__.py``), looked up as the
    import system would, on ``sys.path`` then the current folder, without importing
    anything (not even the parent packages); None if there is no such source file."""
    folders = [Path(d or ".").absolute() for d in [*sys.path, os.getcwd()]]
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last, portions = i == len(parts) - 1, []
        for folder in folders:
            base = folder / part
            if (base / "__init__.py").is_file():  # a regular package: its folder alone
                if last:
                    return base / "__init__.py"
                portions = [base]
                break
            if base.with_suffix(".py").is_file():  # a module: it has no submodules
                return base.with_suffix(".py") if last else None
            if base.is_dir():  # a portion of a namespace package
                portions.append(base)
        if last or not portions:
            return None
        folders = portions
    return None


def code_digest(model: Any, path: Path) -> str:
    """``model.sha256`` for the user's file ``path`` that ``model`` names: the file and the
    helpers of theirs it imports (``nnlab/code_digest.py``). Raises OSError."""
    target = model.name.rpartition(":")[0] if is_user_model(model.name) else ""
    return code_sha256(path, None if not target or is_file_target(target) else target)


def fill_user_code(model: Any) -> None:
    """Complete ``model`` (a ModelConfig) in place: the user's file path made absolute (from
    the current folder) and ``model.sha256`` filled in when empty. A file that does not
    exist is a one-line ConfigError; one whose digest is recorded is not read at all."""
    if is_user_model(model.name):
        target, cls = parse_user_model(model.name)
        if is_file_target(target) and not os.path.isabs(os.path.expanduser(target)):
            model.name = f"{_absolute(target, Path.cwd())}:{cls}"
    if model.modules and not os.path.isabs(os.path.expanduser(model.modules)):
        model.modules = _absolute(model.modules, Path.cwd())
    found = user_code_file(model)
    if found is None or model.sha256:
        return
    key, path, _ = found
    if path is None:
        raise ConfigError(
            f"{key}: no module {model.name.rpartition(':')[0]!r} on the Python path or in the "
            "current folder (give a file: path/to/file.py:Class)"
        )
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {path}")
    try:
        model.sha256 = code_digest(model, path)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None


def user_code_problem(model: Any) -> str | None:
    """Why the user's file named in ``model`` is not the one its ``model.sha256`` recorded
    (vanished, changed), or None when it is (or no user's file is named)."""
    found = user_code_file(model)
    if found is None:
        return None
    key, path, _ = found
    if path is None or not path.is_file():
        return f"its {key} file {path or model.name} no longer exists"
    try:
        now = code_digest(model, path)
        # a run recorded before helpers counted (nnlab < 2026-11-27) holds the file's digest
        unchanged = not model.sha256 or model.sha256 == now or model.sha256 == file_sha256(path)
    except OSError as exc:
        return (
            f"its {key} file {path} (or a file it imports) cannot be read ({exc.strerror or exc})"
        )
    if not unchanged:
        return (
            f"its {key} file {path}, or a file of yours it imports, has changed since (sha256 "
            f"{model.sha256[:12]}... recorded, {now[:12]}... now)"
        )
    return None


def check_user_code(model: Any) -> None:
    """Before training: a ConfigError when the user's file is gone or is not the recorded one."""
    problem = user_code_problem(model)
    if problem is not None:
        raise ConfigError(
            f"model.sha256: {problem}; to train the file as it is now, --set model.sha256= "
            "(empty: the digest is taken again)"
        )


def user_code_record(model: Any) -> dict[str, Any] | None:
    """What ``summary.json`` records of the user's code under ``user_code``: key, path, class, sha256."""
    found = user_code_file(model)
    if found is None:
        return None
    key, path, cls = found
    return {"key": key, "path": str(path) if path else None, "class": cls, "sha256": model.sha256}


__all__ = [
    "check_user_code",
    "code_digest",
    "file_sha256",
    "fill_user_code",
    "is_user_model",
    "locate_module",
    "parse_user_model",
    "resolve_layer_paths",
    "user_code_file",
    "user_code_problem",
    "user_code_record",
]
