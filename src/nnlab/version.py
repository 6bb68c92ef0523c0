"""The package version, on its own so that low-level modules can read it without ``import nnlab``."""

__version__ = "0.1.0"
