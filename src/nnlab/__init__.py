"""nnlab: train, compare and report classic neural-network baselines.

The command-line interface is ``nnlab`` (or ``python -m nnlab``); see the README.
In Python (a notebook, a script) the same engine is a small API (``nnlab/api.py``)::

    import nnlab
    run = nnlab.train("moons", seed=1)      # a Run: .summary .metrics .model .plot_curves()
    seeds = nnlab.train("moons", seeds=5)   # a Sweep: .rows .summary (mean, std, n) .runs

Importing this package is light: ``nnlab.api`` and ``nnlab.config`` import only
the standard library; torch, scikit-learn and matplotlib load when something
that needs them is used.
"""

from __future__ import annotations

from nnlab.api import (  # noqa: E402
    Run,
    Sweep,
    check,
    load_config,
    open_run,
    report,
    resume,
    sweep,
    train,
    tune,
)
from nnlab.config import Config  # noqa: E402
from nnlab.errors import ConfigError, DataError, NnlabError, RunError  # noqa: E402
from nnlab.version import __version__  # noqa: E402

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "NnlabError",
    "Run",
    "RunError",
    "Sweep",
    "__version__",
    "check",
    "load_config",
    "open_run",
    "report",
    "resume",
    "sweep",
    "train",
    "tune",
]
