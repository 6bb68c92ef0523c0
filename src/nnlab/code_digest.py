"""The digest ``model.sha256`` records: the user's file and the files of theirs it imports.

A model file often imports helpers kept beside it (``from layers import Block``); editing
one changes the model as surely as editing the file, so ``resume`` must see it. The
helpers are found by reading import statements with ``ast``, never by importing, and
resolved as the import will resolve them (``nnlab.models.user_code``):

- a file (``path/net.py:Net``, ``model.modules``) is imported with its own folder first on
  ``sys.path``: ``import layers`` is ``FOLDER/layers.py`` or ``FOLDER/layers/__init__.py``;
  its helpers are the files under that folder;
- a module (``mypkg.net:Net``) belongs to its top-level package: absolute imports of that
  package and relative ones (``from .layers import X``) are its helpers.

Everything else (the standard library, torch, installed packages) is not the user's code
of this run and is left out, as are imports that name no such file. Statements inside
functions and ``try`` blocks count too: a file is hashed, never run, so reading too much
costs nothing but a little time. With no helpers the digest is the sha256 of the file's
bytes alone, what it always was.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

MAX_FILES = 200  # helpers followed at most: a digest, not an inventory of a tree
MAX_PARSED_BYTES = 1 << 20  # a helper larger than this is hashed but not read for imports


def file_sha256(path: Path) -> str:
    """The sha256 of the file's bytes, as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_sha256(path: Path, module: str | None = None) -> str:
    """The digest of ``path`` and its helpers (see the module docstring).

    ``module`` is the dotted name when the user named a module (``mypkg.net``), None
    for a file. Raises OSError when a file cannot be read."""
    return files_sha256(*code_files(path, module))


def code_files(path: Path, module: str | None = None) -> tuple[Path, list[Path]]:
    """(the folder imports start from, ``[path, *its helpers]``), for ``files_sha256``."""
    path = Path(path).absolute()
    root, scope, package = _layout(path, module)
    return root, [path, *helper_files(path, root, scope, package)]


def files_sha256(root: Path, files: list[Path]) -> str:
    """The digest of ``files`` (the user's file first, then its helpers) under ``root``."""
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for file in files:  # each as (its path under root, its bytes), length-prefixed
        name = file.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
        data = file.read_bytes()
        for part in (name, data):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def _layout(path: Path, module: str | None) -> tuple[Path, Path, tuple[str, ...]]:
    """(root: the folder imports start from, scope: the folder helpers must lie in, the
    package ``path`` belongs to, as a tuple of names)."""
    if module is None:
        return path.parent, path.parent, ()
    parts = module.split(".")
    depth = len(parts) if path.name == "__init__.py" else len(parts) - 1
    root = path.parents[depth]
    return root, root / parts[0], tuple(parts if path.name == "__init__.py" else parts[:-1])


def helper_files(path: Path, root: Path, scope: Path, package: tuple[str, ...]) -> list[Path]:
    """The files under ``scope`` that ``path`` imports, and those they import, sorted."""
    found: set[Path] = set()
    todo = [(path, package)]
    while todo and len(found) < MAX_FILES:
        file, pkg = todo.pop()
        for target in sorted(set(_resolved(file, pkg, root, scope))):
            if target != path and target not in found and len(found) < MAX_FILES:
                found.add(target)
                # its package: the folders above it (a/b/c.py and a/b/__init__.py: a.b)
                todo.append((target, target.relative_to(root).parts[:-1]))
    return sorted(found)


def _resolved(file: Path, package: tuple[str, ...], root: Path, scope: Path) -> Iterator[Path]:
    """The files under ``scope`` that the import statements of ``file`` load."""
    for parts, level in _imports(file):
        if level:
            if level > len(package):
                continue  # beyond the top package (or no package): it fails, nothing to hash
            parts = (*package[: len(package) - level + 1], *parts)
        yield from _files_of(parts, root, scope)


def _imports(file: Path) -> Iterator[tuple[tuple[str, ...], int]]:
    """(the dotted name's parts, the relative level) of every module ``file`` may import."""
    try:
        if file.stat().st_size > MAX_PARSED_BYTES:
            return
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (OSError, SyntaxError, ValueError):  # its import reports it; the bytes are hashed
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield tuple(alias.name.split(".")), 0
        elif isinstance(node, ast.ImportFrom):
            stem = tuple(node.module.split(".")) if node.module else ()
            yield stem, node.level
            for alias in node.names:  # `from pkg import sub` may name a submodule
                if alias.name != "*":
                    yield (*stem, alias.name), node.level


def _files_of(parts: tuple[str, ...], root: Path, scope: Path) -> Iterator[Path]:
    """The files importing ``a.b.c`` from ``root`` runs (a/__init__.py, a/b/__init__.py,
    a/b/c.py or a/b/c/__init__.py), those under ``scope`` only; none if ``a`` is not there."""
    if not parts or not _inside(root / parts[0], scope):
        return  # not the user's package (torch, the standard library, ...)
    folder = root
    for i, name in enumerate(parts):
        if not name.isidentifier():
            return
        package, module = folder / name / "__init__.py", folder / f"{name}.py"
        if package.is_file():
            if _inside(package, scope):
                yield package
            folder = folder / name
        elif module.is_file():
            if _inside(module, scope):
                yield module
            return  # a module has no submodules; the rest are names in it
        elif (folder / name).is_dir() and i < len(parts) - 1:
            folder = folder / name  # a namespace package: no file of its own
        else:
            return


def _inside(file: Path, scope: Path) -> bool:
    try:
        return file.resolve().is_relative_to(scope.resolve())
    except OSError:
        return False
