"""Importing the user's own code (a model file, a NumPy modules file), with one-line errors.

Only the commands that run what the user named call this: ``train``, ``sweep``,
``resume`` (of a run whose recorded file is unchanged), ``check`` and the API
functions that do the same. ``report``, ``open_run`` and ``data info`` never do:
they read run folders, and code named inside a folder someone hands over is not
run by reading it.

Every way a file can fail becomes one ``ConfigError`` line naming the file: it does
not exist, it has a syntax error (with the line), it raises (or calls ``sys.exit``)
while it is imported, it has no such class. No torch here: the NumPy backend uses it too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from nnlab.code_digest import code_files, files_sha256
from nnlab.errors import ConfigError


def split_target(name: str) -> tuple[str, str]:
    """``"path/file.py:Class"`` or ``"package.module:Class"`` -> (target, class name)."""
    target, _, cls = name.rpartition(":")
    return target, cls


def is_file_target(target: str) -> bool:
    """A path (``net.py``, ``models/net``) rather than an importable ``package.module``."""
    return target.endswith(".py") or "/" in target or os.sep in target


def import_user_code(target: str, key: str = "model.name") -> ModuleType:
    """Import a user's file (a path) or module (``package.module``); ``key`` names the config
    key (or command argument) that named it in error messages.

    A file is imported under a name made from its path and its code's digest (the file
    and the files of the user's it imports: ``code_digest.py``), with its own
    folder first on ``sys.path`` (so it can import the files beside it, as a script
    would), and is imported again only when that code changes: then its helpers are
    imported afresh too, so the code that trains is the code whose digest is recorded."""
    if not is_file_target(target):
        return _import_module(target, key)
    path = Path(target).expanduser().absolute()
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {path}")
    try:
        source, (root, files) = path.read_bytes(), code_files(path)
        code = files_sha256(root, files)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None
    digest = hashlib.sha256(
        str(path).encode("utf-8", "surrogateescape") + code.encode()
    ).hexdigest()
    name = f"nnlab_user_{path.stem if path.stem.isidentifier() else 'file'}_{digest[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    _forget_helpers(set(files[1:]))
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{key}: {path}, line {exc.lineno}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # e.g. null bytes: not Python source at all
        raise ConfigError(f"{key}: {path} is not Python source ({exc})") from None
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up there
    try:
        with _on_path(str(path.parent)):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise ConfigError(f"{key}: importing {path} {raised(exc, path)}") from None
    return module


def _forget_helpers(helpers: set[Path]) -> None:
    """Drop the modules of a user file's ``helpers`` imported earlier in this process (a
    notebook that trains, edits a helper and trains again), so its import reads them as
    they are."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and not name.startswith("nnlab_user_") and Path(file).absolute() in helpers:
            del sys.modules[name]


def _import_module(dotted: str, key: str) -> ModuleType:
    """``package.module`` from the Python path or the current folder (as ``python -m`` finds it)."""
    try:
        with _on_path(os.getcwd(), first=False):
            return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and dotted.startswith(exc.name):
            raise ConfigError(
                f"{key}: no module {dotted!r} on the Python path or in the current folder"
            ) from None
        raise ConfigError(f"{key}: importing {dotted} {raised(exc)}") from None
    except SyntaxError as exc:
        raise ConfigError(
            f"{key}: {exc.filename}, line {exc.lineno}: syntax error: {exc.msg}"
        ) from None
    except (Exception, SystemExit) as exc:
        raise ConfigError(f"{key}: importing {dotted} {raised(exc)}") from None


@contextmanager
def _on_path(folder: str, first: bool = True):
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder) if first else sys.path.append(folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def raised(exc: BaseException, path: Path | None = None) -> str:
    """``raised ValueError: msg (file.py, line 12)``: the exception and the deepest line of the
    user's file (or the deepest line of all) it went through."""
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({exc.code!r}) (put a script's own code under if __name__ == '__main__':)"
    else:
        message = " ".join(str(exc).split())[:300]
        what = f"raised {type(exc).__name__}" + (f": {message}" if message else "")
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if path is not None and Path(f.filename) == path] or frames[-1:]
    if mine:
        what += f" ({Path(mine[-1].filename).name}, line {mine[-1].lineno})"
    return what


def user_class(module: ModuleType, cls: str, key: str, where: str) -> type:
    """The class ``cls`` of ``module``, or a one-line ConfigError listing the classes it has."""
    found = getattr(module, cls, None)
    if found is None:
        classes = sorted(
            n for n, v in vars(module).items() if inspect.isclass(v) and not n.startswith("_")
        )
        has = f" (it has: {', '.join(classes)})" if classes else " (it defines no classes)"
        raise ConfigError(f"{key}: {where} has no class {cls!r}{has}")
    if not inspect.isclass(found):
        raise ConfigError(f"{key}: {where}: {cls!r} is a {type(found).__name__}, not a class")
    return found


def defined_classes(module: ModuleType) -> list[type]:
    """The classes the module itself defines (not those it imports), in source order."""
    own = [
        v for v in vars(module).values() if inspect.isclass(v) and v.__module__ == module.__name__
    ]
    return sorted(own, key=lambda c: _line(c))


def _line(cls: type) -> int:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return 0
