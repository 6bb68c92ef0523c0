"""nnlab: train, compare and report classic neural-network baselines.

The command-line interface is ``nnlab`` (or ``python -m nnlab``); see the README.
Importing this package is light: torch, scikit-learn and matplotlib load only
when something that needs them is used.
"""

__version__ = "0.1.0"

from nnlab.config import Config, load_config  # noqa: E402
from nnlab.errors import ConfigError, DataError, NnlabError, RunError  # noqa: E402

__all__ = ["Config", "ConfigError", "DataError", "NnlabError", "RunError", "load_config", "__version__"]
