"""The engine: one run from a config to a run folder.

``plan.py`` decides the path a run takes, ``loop.py:fit`` is the one training loop,
``run.py`` ties config, data, model, fit and the run folder together (see
docs/architecture.md). Modules are imported where used: this package imports nothing.
"""
