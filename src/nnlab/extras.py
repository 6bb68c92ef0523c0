"""Optional packages (the ``nnlab[tune]``, ``nnlab[ray]`` extras, TensorBoard): is one installed?

Asked before a command writes anything, so that a missing extra is one line naming what
to install rather than a traceback half-way through. ``find_spec`` looks the package up
without importing it: importing Ray or TensorBoard takes a second or more.
"""

from __future__ import annotations

import importlib.util

from nnlab.errors import ConfigError


def installed(package: str) -> bool:
    """Whether ``package`` can be found (a broken or half-removed install counts as missing)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[package] is None, or has no __spec__
        return False


def require(package: str, missing: str) -> None:
    """Raise ConfigError(``missing``), one line saying what to install, unless ``package`` is there."""
    if not installed(package):
        raise ConfigError(missing)
