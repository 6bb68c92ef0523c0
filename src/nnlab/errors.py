"""Errors that the CLI turns into one line on stderr and exit code 2.

Anything raised as an ``NnlabError`` is the user's to fix (a bad preset, a bad
value, a missing or corrupt file); everything else is a bug and exits 1.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: for
    one-line reports of errors that come from elsewhere (a compiler, Ray, TensorBoard)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class NnlabError(Exception):
    """Base class: a problem with the user's input, reported as one line, exit code 2."""

    exit_code = 2


class ConfigError(NnlabError, ValueError):
    """An unknown key, a wrong type or an impossible value in a config or override."""


class DataError(NnlabError):
    """A dataset that is missing, corrupt, or not what it claims to be."""


class RunError(NnlabError):
    """A run or sweep folder that cannot be written, read, or resumed."""


class TrainingDiverged(NnlabError):
    """The loss became NaN or inf; the last good checkpoint is kept.

    One line on stderr like every NnlabError, but exit code 1: the input was
    valid, the optimisation failed.
    """

    exit_code = 1
