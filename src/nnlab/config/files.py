"""Where a config layer comes from: a built-in preset or a TOML file, read within limits.

``read_layer(source, seen)`` is what ``config.load_config`` reads for each layer (the
config named on the command line, then each ``extends`` in turn). Which one a name means:

- a name ending in ``.toml``, or holding a path separator (``./moons``, ``cfg/a.toml``),
  is a file;
- a bare name (``moons``) is the built-in preset of that name; if a file of that name
  also sits in the current folder, one ``note:`` line on stderr says the preset was used
  and how to name the file instead (``./moons``); a bare name that is no preset but an
  existing file is that file.

A file is read only if it is a regular file (a FIFO, a device or ``/dev/zero`` would
block or never end): it is opened with ``O_NONBLOCK`` (so opening a FIFO cannot hang)
and checked with ``fstat`` on the opened descriptor (no race with a swapped path), and
at most ``MAX_CONFIG_BYTES`` are read. ``extends`` chains stop at ``MAX_EXTENDS_DEPTH``
layers and at a cycle (files compared by their real path), each with one line.
"""

from __future__ import annotations

import os
import stat
import sys
from importlib import resources
from pathlib import Path

from nnlab.errors import ConfigError

MAX_EXTENDS_DEPTH = 32  # layers in one extends chain; presets use 2 or 3
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: the largest preset is about 2 KB
_NOTED: set[str] = set()  # bare names already said to be presets despite a file of that name


def is_preset(name: str) -> bool:
    return (resources.files("nnlab.presets") / f"{name}.toml").is_file()


def names_file(source: str) -> bool:
    """Whether ``source`` names a file (see the module docstring), not a built-in preset."""
    if source.endswith(".toml") or "/" in source or os.sep in source:
        return True
    return not is_preset(source) and Path(source).is_file()


def _identity(source: str) -> str:
    """What a layer is, for cycle detection: a file's real path, or the preset's name."""
    return os.path.realpath(source) if names_file(source) else f"preset:{source}"


def read_layer(source: str, seen: tuple[str, ...]) -> tuple[str | None, Path | None]:
    """``(text, path)`` of the file ``source`` names, or ``(None, None)`` for a preset (read
    by the caller). ``seen``: the layers that extend this one, outermost first."""
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(
            f"'{seen[0]}': 'extends' goes deeper than {MAX_EXTENDS_DEPTH} layers "
            f"(... -> {seen[-1]} -> {source}); shorten the chain"
        )
    here = _identity(source)
    if any(_identity(s) == here for s in seen):
        raise ConfigError(f"'{source}': 'extends' forms a cycle: {' -> '.join((*seen, source))}")
    if not names_file(source):
        if not seen and Path(source).is_file() and source not in _NOTED:
            _NOTED.add(source)  # once per process (a report reads presets again)
            print(
                f"note: '{source}' is the built-in preset; for the file of that name in this "
                f"folder write ./{source}",
                file=sys.stderr,
            )
        return None, None
    return read_config_file(source), Path(source)


def read_config_file(source: str) -> str:
    """The UTF-8 text of the regular file ``source``, at most ``MAX_CONFIG_BYTES``; else one line."""
    where = f"config file '{source}'"
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)  # the file opened, not whatever the path names by now
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{where} does not exist (it is a folder)")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"{where} is not a regular file (a FIFO, device or socket); configs are read "
                "from regular files only"
            )
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{where} is {info.st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # grew since fstat
        raise ConfigError(f"{where} is over {MAX_CONFIG_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} cannot be read: not UTF-8 text ({exc.reason})") from None
