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

import importlib
import importlib.util
import sys
import types

__version__ = "0.1.0"

from nnlab.api import Run, Sweep, load_config, open_run, resume  # noqa: E402
from nnlab.config import Config  # noqa: E402
from nnlab.errors import ConfigError, DataError, NnlabError, RunError  # noqa: E402

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "NnlabError",
    "Run",
    "RunError",
    "Sweep",
    "__version__",
    "load_config",
    "open_run",
    "report",
    "resume",
    "sweep",
    "train",
]

# ``nnlab.train``, ``nnlab.sweep`` and ``nnlab.report`` are both API functions and the
# engine's modules (train.py, sweep.py, report.py). Python binds an imported submodule
# to its package's attribute, so the first ``from nnlab.train import fit`` anywhere would
# replace the function with a module that cannot be called. Instead, each of these
# modules is made callable when it is bound: ``nnlab.train("moons")`` calls
# ``nnlab.api.train``, while ``nnlab.train.fit``, ``import nnlab.train as t`` and
# ``monkeypatch.setattr("nnlab.train.fit", ...)`` still see the module.
_CALLABLE_MODULES = ("train", "sweep", "report")


def _callable_module_class(name: str) -> type:
    def __call__(self, *args, **kwargs):
        from nnlab import api

        return getattr(api, name)(*args, **kwargs)

    from nnlab import api

    __call__.__doc__ = getattr(api, name).__doc__  # what help() and Jupyter's `?` show for the call
    return type(f"CallableModule_{name}", (types.ModuleType,), {"__call__": __call__})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if (
            name in _CALLABLE_MODULES
            and isinstance(value, types.ModuleType)
            and not callable(value)
        ):
            value.__class__ = _callable_module_class(name)
        super().__setattr__(name, value)


def __getattr__(name: str):
    """``nnlab.train`` / ``sweep`` / ``report`` on first use: import the module (made callable
    on binding), or the bare API function while a module does not exist (report.py)."""
    if name in _CALLABLE_MODULES:
        if importlib.util.find_spec(f"nnlab.{name}") is not None:
            importlib.import_module(f"nnlab.{name}")  # binds it, through _Package.__setattr__
            return globals()[name]
        from nnlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'nnlab' has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
